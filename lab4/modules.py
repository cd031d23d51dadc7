"""The five modules of the lab. Their structure must not change (assignment rule), so a
template checkpoint loads with ``strict=True``. All layers keep the 32x64 resolution.

Quirks kept on purpose: ``nn.LeakyReLU(True)`` sets a negative slope of 1.0 (an identity) in
Label_Encoder and Gaussian_Predictor, exactly as in the template.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import DepthConvBlock, ResidualBlock

__all__ = ["Generator", "RGB_Encoder", "Gaussian_Predictor", "Decoder_Fusion", "Label_Encoder"]


def alternating_blocks(widths: list[int], first: type) -> list[nn.Module]:
    """The template's block ladder: one block between each pair of consecutive channel widths,
    alternating DepthConvBlock and ResidualBlock, starting with `first`. The list keeps the
    template's layer indices, so its state-dict keys are the template's."""
    kinds = [first, ResidualBlock if first is DepthConvBlock else DepthConvBlock]
    return [kinds[i % 2](c_in, c_out) for i, (c_in, c_out) in enumerate(zip(widths, widths[1:]))]


class Generator(nn.Sequential):
    """Decoder features (B, D, H, W) -> frame (B, 3, H, W); unbounded (the model may add a sigmoid)."""

    def __init__(self, input_nc: int, output_nc: int):
        c = input_nc
        super().__init__(
            *alternating_blocks([c, c, c // 2, c // 2, c // 4, c // 4, c // 8, c // 8], first=DepthConvBlock),
            nn.Conv2d(c // 8, output_nc, 1),
        )


class RGB_Encoder(nn.Sequential):
    """Frame (B, 3, H, W) -> frame feature (B, F, H, W)."""

    def __init__(self, in_chans: int, out_chans: int):
        o = out_chans
        super().__init__(
            *alternating_blocks([in_chans, o // 8, o // 8, o // 4, o // 4, o // 2, o // 2], first=ResidualBlock),
            nn.Conv2d(o // 2, o, 3, padding=1),
        )


class Label_Encoder(nn.Sequential):
    """Pose image (B, 3, H, W) -> pose feature (B, L, H, W). Holds the model's only BatchNorm."""

    def __init__(self, in_chans: int, out_chans: int, norm_layer=nn.BatchNorm2d):
        super().__init__(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_chans, out_chans // 2, kernel_size=7, padding=0),
            norm_layer(out_chans // 2),
            nn.LeakyReLU(True),  # template quirk: slope 1.0, an identity
            ResidualBlock(in_ch=out_chans // 2, out_ch=out_chans),
        )


class Gaussian_Predictor(nn.Sequential):
    """Posterior q(z | x_t, p_t): (frame feature, pose feature) -> (z, mu, logvar), each (B, N, H, W)."""

    def __init__(self, in_chans: int = 48, out_chans: int = 96):
        o = out_chans
        super().__init__(
            *alternating_blocks([in_chans, o // 4, o // 4, o // 2, o // 2, o], first=ResidualBlock),
            nn.LeakyReLU(True),  # template quirk: slope 1.0, an identity
            nn.Conv2d(out_chans, out_chans * 2, kernel_size=1),
        )

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """z = mu + sigma * eps with sigma = exp(0.5 * logvar): the network predicts the log
        variance, which is unconstrained and keeps sigma positive and well conditioned."""
        if eps is None:
            eps = torch.randn_like(mu)
        return mu + torch.exp(0.5 * logvar) * eps

    def distribution(self, img: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the Gaussian over z, each (B, N, H, W), without drawing z."""
        feature = torch.cat([img, label], dim=1)  # (B, F + L, H, W)
        mu, logvar = torch.chunk(super().forward(feature), 2, dim=1)  # 2 x (B, N, H, W)
        return mu, logvar

    def forward(self, img: torch.Tensor, label: torch.Tensor, eps: torch.Tensor | None = None):
        mu, logvar = self.distribution(img, label)
        return self.reparameterize(mu, logvar, eps), mu, logvar


class Decoder_Fusion(nn.Sequential):
    """(previous-frame feature, pose feature, z) -> decoder feature (B, D, H, W)."""

    def __init__(self, in_chans: int = 48, out_chans: int = 96):
        c = in_chans
        super().__init__(
            *alternating_blocks([c, c, c // 4, c // 2, c // 2, out_chans // 2], first=DepthConvBlock),
            nn.Conv2d(out_chans // 2, out_chans, 1, 1),
        )

    def forward(self, img: torch.Tensor, label: torch.Tensor, parm: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([img, label, parm], dim=1))  # (B, F + L + N, H, W) in


class AppearanceMemory(nn.Module):
    """lab4's addition, not a template module (--appearance_memory): (previous-frame feature, frame 0's
    feature), (B, F, H, W) each -> the frame feature the decoder is given, (B, F, H, W). A 1x1 conv over
    both, started as the identity on the previous frame's and zero on frame 0's, so an untrained
    memory changes nothing (and draws no random numbers); training learns how much of frame 0's
    appearance to carry to every step: the content skip of SVG (Denton & Fergus 2018), from frame 0.
    memories = 2 or 3 (--memory_follows_pose, --memory_body_code): frame 0's features, then moved with the
    body and/or its body code painted on the current pose, (B, mF, H, W); the conv is then (F, (1 + m)F)."""

    def __init__(self, channels: int, memories: int = 1):
        super().__init__()
        eye, zeros = torch.eye(channels), torch.zeros(channels, memories * channels)
        weight = torch.cat([eye, zeros], dim=1)                                            # (F, (1 + memories) F)
        self.weight = nn.Parameter(weight[:, :, None, None])                              # (F, (1 + m) F, 1, 1)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, prev_feat: torch.Tensor, first_feat: torch.Tensor) -> torch.Tensor:
        return F.conv2d(torch.cat([prev_feat, first_feat], dim=1), self.weight, self.bias)

    def frame0_share(self) -> float:
        """How far training has moved the memory onto frame 0: the norm of the weights on frame 0's
        features over the norm of all its weights; 0 untrained (the previous frame only). It tells an
        unused memory from a used one, not how much it helps (quick's runs: 0.11-0.15, RESULTS 6s-6u)."""
        w = self.weight.detach().float()                                                  # (F, (1 + m) F, 1, 1)
        return float(w[:, w.shape[0]:].norm() / w.norm())
