"""The template's building blocks, re-implemented from the spec with the same attribute names.

Attribute names matter: they are the keys of a template checkpoint's ``state_dict``
(``...block.0.conv1.0.weight``, ``...conv_out.bias``, ``...skip.weight``), so a checkpoint
trained with the original course code loads here with ``strict=True``.
"""
import torch
import torch.nn as nn


class ResidualBlock(nn.Module):
    """conv3x3 -> LeakyReLU(0.01) -> conv3x3 -> LeakyReLU, plus a 1x1 skip when in != out."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)
        self.leaky_relu = nn.LeakyReLU(inplace=True)  # slope 0.01 (PyTorch default)
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, stride=stride, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in, H, W) -> (B, out, H, W)
        out = self.leaky_relu(self.conv1(x))
        out = self.leaky_relu(self.conv2(out))
        identity = self.skip(x) if self.skip is not None else x
        return out + identity


class ConvFFN(nn.Module):
    """1x1 conv c -> 4c, split in halves a, b, a * LeakyReLU(0.1)(b), 1x1 conv 2c -> c, plus input."""

    def __init__(self, in_ch: int, slope: float = 0.1, inplace: bool = False):
        super().__init__()
        internal_ch = in_ch * 2
        self.conv = nn.Conv2d(in_ch, internal_ch * 2, 1)
        self.conv_out = nn.Conv2d(internal_ch, in_ch, 1)
        self.relu = nn.LeakyReLU(negative_slope=slope, inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, 1)
        return x + self.conv_out(a * self.relu(b))


class DepthConv(nn.Module):
    """[1x1 conv + LeakyReLU(0.01)] -> depthwise 3x3 -> 1x1 conv in->out, plus a 1x1 adaptor residual."""

    def __init__(self, in_ch: int, out_ch: int, depth_kernel: int = 3, stride: int = 1,
                 slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, 1, stride=stride),
            nn.LeakyReLU(negative_slope=slope, inplace=inplace),
        )
        self.depth_conv = nn.Conv2d(in_ch, in_ch, depth_kernel, padding=depth_kernel // 2, groups=in_ch)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 1)
        self.adaptor = None
        if stride != 1:
            self.adaptor = nn.Conv2d(in_ch, out_ch, 2, stride=2)
        elif in_ch != out_ch:
            self.adaptor = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.adaptor(x) if self.adaptor is not None else x
        return self.conv2(self.depth_conv(self.conv1(x))) + identity


class DepthConvBlock(nn.Module):
    """DepthConv(in, out) then ConvFFN(out)."""

    def __init__(self, in_ch: int, out_ch: int, depth_kernel: int = 3, stride: int = 1):
        super().__init__()
        self.block = nn.Sequential(DepthConv(in_ch, out_ch, depth_kernel, stride), ConvFFN(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)
