"""Reusable network blocks shared by the real-time model and the paper networks.

Every block here exports to ONNX opset 17 with static shapes and maps onto TensorRT layers:
no data-dependent shapes, no adaptive pooling (image-level pooling is a mean over H and W),
bilinear resizes with ``align_corners=False`` to sizes that are Python ints at trace time.

Tensors are NCHW float32 throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def upsample_to(x: torch.Tensor, ref_or_size: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Bilinearly resize ``x`` to the spatial size of a reference tensor or to ``(H, W)``.

    Args:
        x: (N, C, h, w) tensor.
        ref_or_size: a tensor whose last two dimensions give (H, W), or an ``(H, W)`` pair.

    Returns:
        (N, C, H, W) tensor; ``x`` itself when it already has that size. ``align_corners=False``
        (half-pixel centres, the ONNX ``Resize`` ``half_pixel`` mode that TensorRT implements).

    Raises:
        ValueError: when the size is not two positive integers.
    """
    if isinstance(ref_or_size, torch.Tensor):
        size = (int(ref_or_size.shape[-2]), int(ref_or_size.shape[-1]))
    else:
        size = tuple(int(s) for s in ref_or_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"upsample_to needs a positive (H, W) size, got {ref_or_size!r}")
    if (int(x.shape[-2]), int(x.shape[-1])) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU, 'same' padding for odd kernels.

    Submodules are named ``0`` (conv), ``1`` (bn), ``2`` (relu, when ``relu=True``).
    Output size is ``ceil(in / stride)`` for odd ``kernel_size``.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        relu: bool = True,
    ):
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, dilation, groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SeparableConv(nn.Module):
    """Depthwise-separable convolution (Chollet, Xception, CVPR 2017; DeepLabV3+).

    depthwise ``k x k`` conv (stride, dilation) -> BN -> [ReLU] -> pointwise 1x1 -> BN -> [ReLU].
    With ``activation=False`` there is no ReLU at all (the Xception-65 form, which puts a ReLU
    *before* the block instead).

    Args:
        in_ch, out_ch: channels.
        kernel_size: odd depthwise kernel size.
        stride, dilation: of the depthwise conv ('same' padding).
        activation: put ReLUs after both BNs.

    Shapes: (N, in_ch, H, W) -> (N, out_ch, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        activation: bool = True,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"SeparableConv needs an odd kernel size, got {kernel_size}")
        padding = dilation * (kernel_size - 1) // 2
        self.depthwise = nn.Conv2d(
            in_ch, in_ch, kernel_size, stride, padding, dilation, groups=in_ch, bias=False
        )
        self.bn_depth = nn.BatchNorm2d(in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn_point = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn_depth(self.depthwise(x)))
        return self.act(self.bn_point(self.pointwise(x)))


class ResidualBlock(nn.Module):
    """Basic residual block (He et al., CVPR 2016): two 3x3 ConvBN, identity or 1x1 projection.

    ``y = relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``; the shortcut is a 1x1 conv + BN
    when the channel count or stride changes, the identity otherwise.

    Shapes: (N, in_ch, H, W) -> (N, out_ch, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = ConvBNReLU(in_ch, out_ch, 3, stride, dilation)
        self.conv2 = ConvBNReLU(out_ch, out_ch, 3, 1, dilation, relu=False)
        if in_ch != out_ch or stride != 1:
            self.shortcut: nn.Module = ConvBNReLU(in_ch, out_ch, 1, stride, relu=False)
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


def unpool2x(x: torch.Tensor) -> torch.Tensor:
    """Zero-insertion 2x unpooling of Laina et al. (2016): each value goes to the top-left of
    its 2x2 cell, the other three are zero.

    Built from ``stack`` + ``reshape`` (ONNX Concat/Reshape; TensorRT-friendly).
    Shapes: (N, C, H, W) -> (N, C, 2H, 2W).
    """
    n, c, h, w = (int(s) for s in x.shape)
    zeros = torch.zeros_like(x)
    x = torch.stack((x, zeros), dim=-1).reshape(n, c, h, 2 * w)
    return torch.stack((x, torch.zeros_like(x)), dim=-2).reshape(n, c, 2 * h, 2 * w)


class UpProjection(nn.Module):
    """FCRN up-projection block (Laina et al., "Deeper Depth Prediction with Fully
    Convolutional Residual Networks", 3DV 2016, Fig. 2c).

    ``u = up(x)``; branch 1: 5x5 conv -> BN -> ReLU -> 3x3 conv -> BN; branch 2 (projection):
    5x5 conv -> BN; ``y = relu(branch1(u) + branch2(u))``.

    Args:
        in_ch, out_ch: channels.
        upsample: ``"unpool"`` (the paper's zero-insertion 2x unpooling; output exactly 2x) or
            ``"bilinear"`` (resize to ``size``, the variant of Hu et al. 2019 that also handles
            sizes that are not exact doubles).

    ``forward(x, size=None)``: ``size`` is the (H, W) to reach, default ``2x``.
    Shapes: (N, in_ch, h, w) -> (N, out_ch, H, W).

    Raises:
        ValueError: unknown ``upsample``; ``"unpool"`` asked for a size other than 2x.
    """

    def __init__(self, in_ch: int, out_ch: int, upsample: str = "unpool"):
        super().__init__()
        if upsample not in ("unpool", "bilinear"):
            raise ValueError(
                f"UpProjection upsample must be 'unpool' or 'bilinear', got {upsample!r}"
            )
        self.upsample = upsample
        self.branch1 = nn.Sequential(
            ConvBNReLU(in_ch, out_ch, 5), ConvBNReLU(out_ch, out_ch, 3, relu=False)
        )
        self.branch2 = ConvBNReLU(in_ch, out_ch, 5, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        double = (2 * int(x.shape[-2]), 2 * int(x.shape[-1]))
        size = double if size is None else (int(size[0]), int(size[1]))
        if self.upsample == "unpool":
            if size != double:
                raise ValueError(f"unpool UpProjection doubles the size {double}, asked for {size}")
            u = unpool2x(x)
        else:
            u = upsample_to(x, size)
        return self.relu(self.branch1(u) + self.branch2(u))


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling of DeepLabV3 (Chen et al., arXiv:1706.05587, Sec. 3.3).

    Five parallel branches: 1x1 ConvBNReLU, three 3x3 atrous ConvBNReLU at ``rates``, and
    image-level pooling (mean over H, W -> 1x1 conv + ReLU -> broadcast back). Concatenated
    and projected by a 1x1 ConvBNReLU, then dropout.

    The pooling branch uses a conv with bias and no BatchNorm: BN over a 1x1 map fails for a
    batch of one in training (the one documented deviation from the paper's BN there).

    Args:
        in_ch: input channels. out_ch: channels of every branch and of the output.
        rates: three atrous rates (6, 12, 18 for output stride 16; double them for 8).
        dropout: dropout probability after the projection (0.1 in DeepLabV3+).
        separable: use :class:`SeparableConv` for the atrous branches (DeepLabV3+ form).

    Shapes: (N, in_ch, H, W) -> (N, out_ch, H, W).
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        dropout: float = 0.1,
        separable: bool = False,
    ):
        super().__init__()
        if len(rates) != 3:
            raise ValueError(f"ASPP takes three atrous rates, got {tuple(rates)}")
        branches: list[nn.Module] = [ConvBNReLU(in_ch, out_ch, 1)]
        for r in rates:
            if separable:
                branches.append(SeparableConv(in_ch, out_ch, 3, dilation=int(r)))
            else:
                branches.append(ConvBNReLU(in_ch, out_ch, 3, dilation=int(r)))
        self.branches = nn.ModuleList(branches)
        self.image_pool = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True))
        self.project = ConvBNReLU(5 * out_ch, out_ch, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        feats = [b(x) for b in self.branches]
        pooled = self.image_pool(x.mean(dim=(2, 3), keepdim=True))
        feats.append(pooled.expand(-1, -1, h, w))
        return self.dropout(self.project(torch.cat(feats, dim=1)))
