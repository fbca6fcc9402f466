"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
CVPR 2018) in plain torch with torchvision's parameter names (``features.N.conv...``), plus the
TF "SAME" padding needed to reproduce TF-trained weights exactly.

One of the encoders of :mod:`joint_perception.models.backbones` (which builds it by name and
loads weight files into it); its own module because the TFLite importer
(:mod:`joint_perception.models.tflite_import`) reads its structure too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MobileNetV2", "mobilenet_v2", "Conv2dTFSame", "InvertedResidual"]


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of ``divisor``, never below 90 % of v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2dTFSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``"SAME"`` padding (its ``padding`` argument is ignored).

    TF pads ``max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)`` pixels along a side of n
    pixels, half before and the odd one after (bottom/right): with stride 2 and an even input
    that is 0 above/left and 1 below/right, whereas torch's symmetric ``padding=1`` shifts the
    sampling grid by one pixel. The padding is computed from the input size at every call
    (explicit ``F.pad``), so weights converted from TF reproduce TF's outputs exactly.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []  # F.pad order: last dimension (width) first
        for n, k, s, d in zip(
            x.shape[:-3:-1], self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1]
        ):
            n = int(n)  # a constant when traced: ONNX export at a fixed input size
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(
            F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )


class _ConvBNReLU6(nn.Sequential):
    """torchvision ``Conv2dNormActivation`` with ReLU6: names ``0`` (conv), ``1`` (bn).
    ``tf_same``: a strided conv pads as TF ``"SAME"`` (:class:`Conv2dTFSame`)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups=1,
        tf_same=False,
    ):
        conv = Conv2dTFSame if tf_same and stride > 1 else nn.Conv2d
        super().__init__(
            conv(
                in_ch,
                out_ch,
                kernel_size,
                stride,
                (kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """torchvision MobileNetV2 block: [1x1 expand] -> 3x3 depthwise -> 1x1 linear projection,
    residual when stride 1 and channels equal. Names ``conv.0.0``, ..., as torchvision."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, tf_same: bool = False):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_ConvBNReLU6(inp, hidden, 1))
        layers += [
            _ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden, tf_same=tf_same),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (expansion t, channels c, repeats n, first stride s) — Sandler et al. 2018, Table 2
_MBV2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


class MobileNetV2(nn.Module):
    """MobileNetV2 trunk with torchvision names (``features.0.0.weight``,
    ``features.1.conv.0.0.weight``, ..., ``features.18.0.weight``).

    Args:
        width_mult: channel multiplier (channels rounded to multiples of 8 as torchvision).
        last_conv: keep ``features.18`` (1x1 conv to 1280 x max(1, width_mult)); the deepest
            feature is then its output, otherwise that of ``features.17`` (320 x width_mult),
            which is what dense-prediction decoders usually want (fewer parameters).
        tf_same_padding: the stride-2 convs pad as TF ``"SAME"`` (:class:`Conv2dTFSame`,
            bottom/right for even sizes) instead of torch's symmetric 1 pixel, to reproduce
            TF-trained weights (e.g. from :mod:`joint_perception.models.tflite_import`)
            exactly. Same parameters and names; off by default (sizes and ONNX graph as
            torchvision). Odd input sizes pad the same either way.

    ``forward_features(x)``: (N, 3, H, W) -> [features.3 (/4), features.6 (/8),
    features.13 (/16), features.17 or 18 (/32)]; ``channels`` [24, 32, 96, 320] at width 1.
    """

    def __init__(
        self, width_mult: float = 1.0, last_conv: bool = False, tf_same_padding: bool = False
    ):
        super().__init__()
        input_channel = _make_divisible(32 * width_mult)
        layers: list[nn.Module] = [
            _ConvBNReLU6(3, input_channel, stride=2, tf_same=tf_same_padding)
        ]
        for t, c, n, s in _MBV2_SETTING:
            out_ch = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(
                    InvertedResidual(input_channel, out_ch, s if i == 0 else 1, t, tf_same_padding)
                )
                input_channel = out_ch
        taps = [3, 6, 13, 17]
        if last_conv:
            last = _make_divisible(1280 * max(1.0, width_mult))
            layers.append(_ConvBNReLU6(input_channel, last, 1))
            taps[-1] = 18
        self.features = nn.Sequential(*layers)
        self.taps = tuple(taps)

        def out_ch_of(i: int) -> int:
            m = layers[i]
            return m.out_channels if isinstance(m, InvertedResidual) else m[0].out_channels

        self.channels = [out_ch_of(i) for i in taps]
        self.strides = [4, 8, 16, 32]
        self.width_mult = width_mult
        self.tf_same_padding = tf_same_padding
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)


def mobilenet_v2(
    width_mult: float = 1.0, last_conv: bool = False, tf_same_padding: bool = False
) -> MobileNetV2:
    """MobileNetV2 trunk; see :class:`MobileNetV2`."""
    return MobileNetV2(width_mult, last_conv, tf_same_padding)
