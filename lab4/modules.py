"""The five modules of the lab. Their structure must not change (assignment rule), so a
template checkpoint loads with ``strict=True``. All layers keep the 32x64 resolution.

Quirks kept on purpose: ``nn.LeakyReLU(True)`` sets a negative slope of 1.0 (an identity) in
Label_Encoder and Gaussian_Predictor, exactly as in the template.
"""
import torch
import torch.nn as nn

from .layers import DepthConvBlock, ResidualBlock

__all__ = ["Generator", "RGB_Encoder", "Gaussian_Predictor", "Decoder_Fusion", "Label_Encoder"]


class Generator(nn.Sequential):
    """Decoder features (B, D, H, W) -> frame (B, 3, H, W); unbounded (the model may add a sigmoid)."""

    def __init__(self, input_nc: int, output_nc: int):
        super().__init__(
            DepthConvBlock(input_nc, input_nc),
            ResidualBlock(input_nc, input_nc // 2),
            DepthConvBlock(input_nc // 2, input_nc // 2),
            ResidualBlock(input_nc // 2, input_nc // 4),
            DepthConvBlock(input_nc // 4, input_nc // 4),
            ResidualBlock(input_nc // 4, input_nc // 8),
            DepthConvBlock(input_nc // 8, input_nc // 8),
            nn.Conv2d(input_nc // 8, output_nc, 1),
        )


class RGB_Encoder(nn.Sequential):
    """Frame (B, 3, H, W) -> frame feature (B, F, H, W)."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__(
            ResidualBlock(in_chans, out_chans // 8),
            DepthConvBlock(out_chans // 8, out_chans // 8),
            ResidualBlock(out_chans // 8, out_chans // 4),
            DepthConvBlock(out_chans // 4, out_chans // 4),
            ResidualBlock(out_chans // 4, out_chans // 2),
            DepthConvBlock(out_chans // 2, out_chans // 2),
            nn.Conv2d(out_chans // 2, out_chans, 3, padding=1),
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
        super().__init__(
            ResidualBlock(in_chans, out_chans // 4),
            DepthConvBlock(out_chans // 4, out_chans // 4),
            ResidualBlock(out_chans // 4, out_chans // 2),
            DepthConvBlock(out_chans // 2, out_chans // 2),
            ResidualBlock(out_chans // 2, out_chans),
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
        super().__init__(
            DepthConvBlock(in_chans, in_chans),
            ResidualBlock(in_chans, in_chans // 4),
            DepthConvBlock(in_chans // 4, in_chans // 2),
            ResidualBlock(in_chans // 2, in_chans // 2),
            DepthConvBlock(in_chans // 2, out_chans // 2),
            nn.Conv2d(out_chans // 2, out_chans, 1, 1),
        )

    def forward(self, img: torch.Tensor, label: torch.Tensor, parm: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat([img, label, parm], dim=1))  # (B, F + L + N, H, W) in
