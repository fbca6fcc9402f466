"""PASCAL VOC DeepLabV3-MobileNetV2 in plain torch, as a teacher for pseudo-labels.

:class:`DeepLabV3MobileNetV2` is DeepLabV3 (Chen et al., "Rethinking Atrous Convolution for
Semantic Image Segmentation", arXiv:1706.05587, 2017) on MobileNetV2 (Sandler et al., CVPR
2018) in the form of TF DeepLab's MobileNet configuration: no atrous ASPP branches, only a 1x1
conv and image pooling. :func:`pascal_teacher_from_tflite` builds it from a TFLite file
(e.g. google-coral's ``deeplabv3_mnv2_pascal_quant.tflite``) with the structure and weights
read from the graph (:mod:`joint_perception.models.tflite_import`). It outputs 21-class PASCAL
VOC logits at the input resolution; :func:`pascal_to_nyu40` maps its class ids onto the NYUv2
40-class ids to pseudo-label real indoor frames.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from joint_perception.models.backbones import MobileNetV2, mobilenet_v2
from joint_perception.models.base import IMAGENET_MEAN, IMAGENET_STD
from joint_perception.nyuv2_classes import ID40

__all__ = [
    "PASCAL_VOC_CLASSES",
    "PASCAL_TO_NYU40",
    "DeepLabV3MobileNetV2",
    "pascal_teacher_from_tflite",
    "pascal_to_nyu40",
]

#: PASCAL VOC 2012 segmentation classes; index = class id (0 = background).
PASCAL_VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

# PASCAL name -> NYUv2 40-class name; absent = 0 (void, ignored by the losses).
_PASCAL_TO_NYU40_NAMES = {
    "chair": "chair",
    "sofa": "sofa",
    "diningtable": "table",
    "tvmonitor": "television",
    "person": "person",
    "pottedplant": "otherprop",  # NYU's own 894 -> 40 table: "plant" -> otherprop
    "bottle": "otherprop",
    "bicycle": "otherprop",
    "car": "otherprop",
    "cat": "otherprop",
    "dog": "otherprop",
}

#: Read-only uint8 array of length 21: ``PASCAL_TO_NYU40[pascal_id] -> NYUv2 40-class id``
#: (0 = void). See :func:`pascal_to_nyu40`.
PASCAL_TO_NYU40: np.ndarray = np.array(
    [
        ID40[_PASCAL_TO_NYU40_NAMES[n]] if n in _PASCAL_TO_NYU40_NAMES else 0
        for n in PASCAL_VOC_CLASSES
    ],
    dtype=np.uint8,
)
PASCAL_TO_NYU40.setflags(write=False)


def pascal_to_nyu40(labels: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Map PASCAL VOC class ids (0..20) to NYUv2 40-class ids (Gupta et al. 2013; 0 = void).

    chair -> chair (5), sofa -> sofa (6), diningtable -> table (7), tvmonitor -> television
    (25), person -> person (31); pottedplant, bottle, bicycle, car, cat and dog -> otherprop
    (40), as NYUv2's own 894 -> 40 table maps those names ("plant", "bottle", "bicycle",
    "car", "cat", "dog"). background and the classes NYUv2 has no name for (aeroplane, bird,
    boat, bus, cow, horse, motorbike, sheep, train) -> 0, i.e. void: *unknown*, ignored by the
    losses, never "a class" (PASCAL's background covers walls, floors, cabinets ... which are
    NYU classes the teacher cannot name). Note that NYUv2 labels a computer monitor
    "otherprop", while PASCAL's tvmonitor covers both.

    Args:
        labels: integer ids 0..20 of any shape (numpy or torch, e.g. the teacher's argmax).

    Returns:
        Same shape: a uint8 numpy array, or for a tensor an int64 tensor on its device.

    Raises:
        IndexError: an id outside 0..20 (e.g. PASCAL's 255 "ignore").
    """
    if isinstance(labels, torch.Tensor):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(PASCAL_TO_NYU40)):
            raise IndexError(
                f"PASCAL class ids must be in 0..20, got {int(labels.min())}..{int(labels.max())}"
            )
        lut = torch.as_tensor(PASCAL_TO_NYU40.astype(np.int64), device=labels.device)
        return lut[labels.long()]
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(PASCAL_TO_NYU40)):
        raise IndexError(f"PASCAL class ids must be in 0..20, got {labels.min()}..{labels.max()}")
    return PASCAL_TO_NYU40[labels]


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)
    )


def _apply_output_stride(backbone: MobileNetV2, output_stride: int) -> None:
    """TF-slim's rule (``mobilenet.py``, ``output_stride``): once the stride reached
    ``output_stride``, every later 3x3 conv runs with stride 1 and the dilation accumulated
    *before* it (the first one that loses its stride keeps dilation 1)."""
    current, rate = 1, 1
    for layer in backbone.features:
        for conv in (
            m for m in layer.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)
        ):
            s = conv.stride[0]
            if current == output_stride:
                conv.stride, conv.dilation, conv.padding = (1, 1), (rate, rate), (rate, rate)
                rate *= s
            else:
                current *= s
    backbone.strides = [min(s, output_stride) for s in backbone.strides]


class DeepLabV3MobileNetV2(nn.Module):
    """DeepLabV3 with a MobileNetV2 backbone (TF DeepLab's MobileNet configuration).

    backbone ``features.0..17`` (no ``Conv_1``) at ``output_stride`` -> [image pooling
    (global mean, 1x1 conv + BN + ReLU, broadcast), ``aspp0`` (1x1 conv + BN + ReLU)]
    concatenated -> ``concat_projection`` (1x1 conv + BN + ReLU) -> ``logits`` (1x1 conv with
    bias) -> bilinear upsampling to the input size.

    Args:
        num_classes: output classes (21 for PASCAL VOC).
        output_stride: 16 or 8 (TF-slim's stride -> dilation rule).
        aspp_channels: channels of the ASPP branches and projection.
        tf_same_padding: the backbone pads as TF "SAME" (exact TF reproduction).
        align_corners: of the final upsampling (True in DeepLab, which then prefers input
            sizes ``k * output_stride + 1``, e.g. 513).
        mean, std: RGB normalisation (per channel, [0, 1] units) ``forward`` expects; a
            record only: it must match the weights (:func:`pascal_teacher_from_tflite` sets it).

    ``forward(x)``: x (N, 3, H, W) float32 RGB normalised with ``mean``/``std`` -> logits
    (N, num_classes, H, W). Inference only (BN in eval; the 1x1 pooled branch cannot run BN in
    train mode with batch size 1). ``predict(x)`` -> (N, H, W) int64 class ids.
    """

    def __init__(
        self,
        num_classes: int = 21,
        output_stride: int = 16,
        aspp_channels: int = 256,
        tf_same_padding: bool = True,
        align_corners: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.backbone = mobilenet_v2(last_conv=False, tf_same_padding=tf_same_padding)
        _apply_output_stride(self.backbone, output_stride)
        c = self.backbone.channels[-1]
        self.aspp0 = _conv_bn_relu(c, aspp_channels)
        self.image_pooling = _conv_bn_relu(c, aspp_channels)
        self.concat_projection = _conv_bn_relu(2 * aspp_channels, aspp_channels)
        self.logits = nn.Conv2d(aspp_channels, num_classes, 1)
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.align_corners = align_corners
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.features(x)
        pooled = self.image_pooling(f.mean(dim=(2, 3), keepdim=True)).expand(
            -1, -1, f.shape[2], f.shape[3]
        )
        y = self.concat_projection(torch.cat([pooled, self.aspp0(f)], dim=1))
        return F.interpolate(
            self.logits(y), size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class ids (N, H, W) int64 (argmax of the logits); see :func:`pascal_to_nyu40`."""
        return self(x).argmax(dim=1)


def pascal_teacher_from_tflite(
    path: str | os.PathLike,
    input_mean: Sequence[float] = IMAGENET_MEAN,
    input_std: Sequence[float] = IMAGENET_STD,
) -> DeepLabV3MobileNetV2:
    """Build the PASCAL VOC teacher from a DeepLabV3-MobileNetV2 TFLite file.

    Structure (classes, output stride, ASPP width, upsampling) comes from the graph and is
    checked conv by conv (stride and dilation); weights are dequantised with BN as identity
    (:func:`~joint_perception.models.tflite_import.deeplabv3_mobilenet_v2_state_dict_from_tflite`),
    then the first conv is folded to take RGB normalised with ``input_mean``/``input_std``
    (default ImageNet, the project's; pass
    :data:`~joint_perception.models.tflite_import.TF_SLIM_MEAN`/``TF_SLIM_STD`` for TF's
    [-1, 1] and exact TF outputs — the fold differs only on the 1-pixel border of the first
    conv). TF "SAME" padding is on.

    Returns:
        The network in eval mode, ``mean``/``std`` set to the input normalisation.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a DeepLabV3-MobileNetV2 of the supported form (the message
            names the operator / tensor), or its strides or dilations differ from TF-slim's
            output-stride rule.
        ImportError: the ``tflite`` package is missing.
    """
    from joint_perception.models import tflite_import

    state, info = tflite_import.deeplabv3_mobilenet_v2_state_dict_from_tflite(path)
    net = DeepLabV3MobileNetV2(
        info.num_classes,
        info.output_stride,
        info.aspp_channels,
        tf_same_padding=True,
        align_corners=info.align_corners,
        mean=input_mean,
        std=input_std,
    )
    for name, (stride, dilation) in info.conv_geometry.items():
        conv = net.backbone.get_submodule(name)
        if (conv.stride[0], conv.dilation[0]) != (stride, dilation):
            raise ValueError(
                f"{os.fspath(path)}: backbone conv {name} has stride {stride}, dilation {dilation} in the file; "
                f"output stride {info.output_stride} gives stride {conv.stride[0]}, dilation {conv.dilation[0]}"
            )
    state = tflite_import.fold_input_normalization(
        state, tflite_import.TF_SLIM_MEAN, tflite_import.TF_SLIM_STD, input_mean, input_std,
        first_conv="backbone.features.0.0", first_bn="backbone.features.0.1",
    )  # fmt: skip
    net.load_state_dict(state, strict=True)
    return net.eval()
