"""Encoders in plain torch with torchvision's parameter names (torchvision is not importable
with the CPU torch build here; docs/contracts.md section 6).

Every backbone has ``forward_features(x) -> list[Tensor]`` (multi-scale features, shallow to
deep), ``channels`` (list of their channel counts) and ``strides`` (their output strides with
respect to the input). ImageNet weights load from a *file* with :func:`load_pretrained`;
nothing is ever downloaded.

* :func:`resnet18` / 34 / 50 / 101 — He et al., CVPR 2016; torchvision ``ResNet`` names
  (``conv1``, ``bn1``, ``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``, ``fc``).
  Features: [layer1 /4, layer2 /8, layer3 /16, layer4 /32]; ``replace_stride_with_dilation``
  turns the strides of layer2..4 into dilation (DeepLab / CI-Net output stride 8 or 16).
* :func:`vgg16` — Simonyan & Zisserman 2015; ``features.N`` names. Features: [conv3_3 /4,
  conv4_3 /8, conv5_3 /16]; ``dilated=True`` is DeepLab-LargeFOV (Chen et al., ICLR 2015):
  pool4 with stride 1 and conv5 with dilation 2, so conv5_3 is at /8.
* :func:`xception65` — aligned Xception of DeepLabV3+ (Chen et al., ECCV 2018). Features:
  [low-level /4 (128 ch, the decoder's skip), /8, /16, exit flow (2048 ch) at output stride].
* :func:`mobilenet_v2` — Sandler et al., CVPR 2018; torchvision names (``features.N.conv...``).
  Features: [/4 (features.3), /8 (features.6), /16 (features.13), /32 (features.17 or 18)].
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from joint_perception.models.base import IMAGENET_MEAN, IMAGENET_STD
from joint_perception.models.blocks import SeparableConv
from joint_perception.models.mobilenet_v2 import Conv2dTFSame, MobileNetV2, mobilenet_v2
from joint_perception.weights_io import load_weights

log = logging.getLogger(__name__)

__all__ = [
    "ResNet",
    "VGG16",
    "Xception65",
    "MobileNetV2",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "vgg16",
    "xception65",
    "mobilenet_v2",
    "Conv2dTFSame",
    "build_backbone",
    "load_pretrained",
    "deeplab_xception_key_map",
    "PRETRAINED_KEY_MAPS",
    "CLASSIFIER_PREFIXES",
    "calibrate_folded_batchnorm",
    "LoadReport",
]


# --------------------------------------------------------------------------- ResNet


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock`` (ResNet-18/34); dilation allowed (torchvision refuses it)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision ``Bottleneck`` (ResNet V1.5: the stride sits on the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision-compatible ResNet trunk with multi-scale feature output.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
        replace_stride_with_dilation: for layer2, layer3, layer4: replace the stride 2 by
            dilation (torchvision semantics), e.g. (False, True, True) = output stride 8.
        include_top: also create ``avgpool`` + ``fc`` (1000 classes), for classification
            checkpoints used as such; off by default (they are then reported as unexpected
            keys by :func:`load_pretrained`).

    ``forward_features(x)``: x (N, 3, H, W) -> [layer1, layer2, layer3, layer4] with
    ``channels`` e.g. [64, 128, 256, 512] (x4 for Bottleneck) at ``strides`` [4, 8, 16, 32]
    (dilated stages keep the previous stride). Spatial size of a stage at stride s is
    ``ceil(H / s)`` for the usual even sizes.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        replace_stride_with_dilation: Sequence[bool] = (False, False, False),
        include_top: bool = False,
    ):
        super().__init__()
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                "replace_stride_with_dilation must have 3 entries (layer2, layer3, layer4), got "
                f"{tuple(replace_stride_with_dilation)}"
            )
        self.inplanes = 64
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, replace_stride_with_dilation[2])
        self.channels = [64 * block.expansion * m for m in (1, 2, 4, 8)]
        strides, s = [4], 4
        for dilate in replace_stride_with_dilation:
            s = s if dilate else s * 2
            strides.append(s)
        self.strides = strides
        if include_top:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512 * block.expansion, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False) -> nn.Sequential:
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)


def resnet18(replace_stride_with_dilation=(False, False, False), **kw) -> ResNet:
    """ResNet-18 trunk (BasicBlock, [2, 2, 2, 2]); channels [64, 128, 256, 512]."""
    return ResNet(BasicBlock, (2, 2, 2, 2), replace_stride_with_dilation, **kw)


def resnet34(replace_stride_with_dilation=(False, False, False), **kw) -> ResNet:
    """ResNet-34 trunk (BasicBlock, [3, 4, 6, 3]); channels [64, 128, 256, 512]."""
    return ResNet(BasicBlock, (3, 4, 6, 3), replace_stride_with_dilation, **kw)


def resnet50(replace_stride_with_dilation=(False, False, False), **kw) -> ResNet:
    """ResNet-50 trunk (Bottleneck, [3, 4, 6, 3]); channels [256, 512, 1024, 2048]."""
    return ResNet(Bottleneck, (3, 4, 6, 3), replace_stride_with_dilation, **kw)


def resnet101(replace_stride_with_dilation=(False, False, False), **kw) -> ResNet:
    """ResNet-101 trunk (Bottleneck, [3, 4, 23, 3]); channels [256, 512, 1024, 2048]."""
    return ResNet(Bottleneck, (3, 4, 23, 3), replace_stride_with_dilation, **kw)


# --------------------------------------------------------------------------- VGG-16

_VGG16_CFG = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    "M",
)
# indices in ``features`` of the ReLU after conv3_3, conv4_3, conv5_3
_VGG16_TAPS = (15, 22, 29)


class VGG16(nn.Module):
    """VGG-16 (configuration D) trunk with torchvision names ``features.0`` ... ``features.30``.

    Args:
        dilated: DeepLab-LargeFOV form: pool4 (``features.23``) becomes a 3x3 max pool with
            stride 1 and the conv5 layers (``features.24/26/28``) use dilation 2, so conv5_3 is
            at output stride 8 instead of 16. Parameter shapes and names are unchanged.

    ``forward_features(x)``: (N, 3, H, W) -> [conv3_3 (256 ch, /4), conv4_3 (512, /8),
    conv5_3 (512, /16 or /8)], each after its ReLU. pool5 (``features.30``) is kept for the
    names but not run. Sizes are ``floor`` halvings (2x2 max pools).
    """

    def __init__(self, dilated: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        if dilated:
            layers[23] = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
            for i in (24, 26, 28):
                layers[i].dilation = (2, 2)
                layers[i].padding = (2, 2)
        self.features = nn.Sequential(*layers)
        self.dilated = dilated
        self.channels = [256, 512, 512]
        self.strides = [4, 8, 8 if dilated else 16]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, layer in enumerate(self.features[: _VGG16_TAPS[-1] + 1]):
            x = layer(x)
            if i in _VGG16_TAPS:
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)


def vgg16(dilated: bool = False) -> VGG16:
    """VGG-16 trunk; see :class:`VGG16`."""
    return VGG16(dilated)


# --------------------------------------------------------------------------- Xception-65


class XceptionBlock(nn.Module):
    """One aligned-Xception module: three (ReLU -> separable conv -> BN) units plus a shortcut.

    The last separable conv carries the stride (DeepLabV3+ replaces max pooling by strided
    separable convs). Shortcut: 1x1 conv + BN when channels or stride change, else identity.
    ``start_with_relu=False`` drops the first ReLU (the first entry block follows a ReLU).
    """

    def __init__(
        self,
        in_ch: int,
        channels: Sequence[int],
        stride: int = 1,
        dilation: int = 1,
        start_with_relu: bool = True,
        residual: bool = True,
    ):
        super().__init__()
        units: list[nn.Module] = []
        prev = in_ch
        for i, ch in enumerate(channels):
            if i > 0 or start_with_relu:
                units.append(nn.ReLU(inplace=False))
            s = stride if i == len(channels) - 1 else 1
            units.append(SeparableConv(prev, ch, 3, stride=s, dilation=dilation, activation=False))
            prev = ch
        self.units = nn.Sequential(*units)
        self.skip: nn.Module | None = None
        if residual and (in_ch != prev or stride != 1):
            self.skip = nn.Sequential(
                nn.Conv2d(in_ch, prev, 1, stride, bias=False), nn.BatchNorm2d(prev)
            )
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.units(x)
        if not self.residual:
            return out
        return out + (x if self.skip is None else self.skip(x))


class Xception65(nn.Module):
    """Aligned Xception-65 of DeepLabV3+ (Chen et al., ECCV 2018, Sec. 3.2 and Fig. 4).

    Entry flow: conv 3x3/2 (32) -> conv 3x3 (64) -> blocks of 128 (/4), 256 (/8), 728 (/16);
    middle flow: 16 residual blocks of 728; exit flow: block (728, 1024, 1024) then separable
    convs 1536, 1536, 2048 with ReLU. For output stride 16 the exit block keeps stride 1 and
    dilates by 2 after it (DeepLab's atrous form); for 8 the entry's third block keeps stride
    1, the middle flow dilates by 2 and the exit flow by 2 and 4.

    Args:
        output_stride: 16 or 8.

    ``forward_features(x)``: (N, 3, H, W) -> [low-level /4 (128, after ReLU, the decoder
    skip), /8 (256), /16 or /8 (728, after the middle flow), final (2048) at output_stride].
    Not torchvision (torchvision has no Xception); names follow this module.
    """

    def __init__(self, output_stride: int = 16):
        super().__init__()
        if output_stride == 16:
            entry3_stride, middle_dil, exit_dil = 2, 1, (1, 2)
        elif output_stride == 8:
            entry3_stride, middle_dil, exit_dil = 1, 2, (2, 4)
        else:
            raise ValueError(f"xception65 output_stride must be 8 or 16, got {output_stride}")
        self.output_stride = output_stride
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=False)
        self.block1 = XceptionBlock(64, (128, 128, 128), stride=2, start_with_relu=False)
        self.block2 = XceptionBlock(128, (256, 256, 256), stride=2)
        self.block3 = XceptionBlock(256, (728, 728, 728), stride=entry3_stride)
        self.middle = nn.Sequential(
            *[XceptionBlock(728, (728, 728, 728), dilation=middle_dil) for _ in range(16)]
        )
        self.exit_block = XceptionBlock(728, (728, 1024, 1024), dilation=exit_dil[0])
        self.exit_convs = nn.Sequential(
            SeparableConv(1024, 1536, 3, dilation=exit_dil[1], activation=True),
            SeparableConv(1536, 1536, 3, dilation=exit_dil[1], activation=True),
            SeparableConv(1536, 2048, 3, dilation=exit_dil[1], activation=True),
        )
        self.channels = [128, 256, 728, 2048]
        self.strides = [4, 8, 16 if output_stride == 16 else 8, output_stride]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        low = self.relu(self.block1(x))
        s8 = self.block2(low)
        s16 = self.middle(self.block3(s8))
        out = self.exit_convs(self.exit_block(s16))
        return [low, s8, s16, out]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)


def xception65(output_stride: int = 16) -> Xception65:
    """Xception-65 (DeepLabV3+); see :class:`Xception65`."""
    return Xception65(output_stride)


# --------------------------------------------------------------------------- registry + loading

_BUILDERS = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vgg16": vgg16,
    "xception65": xception65,
    "mobilenet_v2": mobilenet_v2,
}


#: keys of a classification checkpoint that a feature trunk has no module for (ignored when a
#: backbone loads ImageNet weights): torchvision ResNet ``fc``, VGG / MobileNetV2 ``classifier``
CLASSIFIER_PREFIXES = ("fc.", "classifier.")


def build_backbone(
    name: str,
    pretrained: str | os.PathLike | None = None,
    pretrained_key_map: str | None = None,
    **kw,
) -> nn.Module:
    """Build a backbone by name, optionally loading weights from a file.

    Args:
        name: one of ``resnet18/34/50/101``, ``vgg16``, ``xception65``, ``mobilenet_v2``.
        pretrained: path of a state_dict file in this module's (torchvision) naming, loaded
            **strictly**: a tensor of the trunk missing from the file, a file tensor the trunk
            has no place for (classifier heads ``fc.*`` / ``classifier.*`` excepted) or a
            shape mismatch is an error naming the file and the keys.
        pretrained_key_map: name of a key mapping in :data:`PRETRAINED_KEY_MAPS` for files in
            another naming (e.g. ``"deeplab_xception"``); the mapped file is then loaded
            strictly.
        **kw: the builder's arguments (``replace_stride_with_dilation``, ``dilated``,
            ``output_stride``, ``width_mult``...).

    Raises:
        KeyError: unknown name or key map (the message lists the known ones).
        FileNotFoundError: ``pretrained`` does not exist.
        ValueError: the file does not fit the trunk (see :func:`load_pretrained`).
    """
    if name not in _BUILDERS:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(sorted(_BUILDERS))}")
    net = _BUILDERS[name](**kw)
    if pretrained:
        load_pretrained(
            net,
            pretrained,
            strict=True,
            key_map=pretrained_key_map,
            ignore_unexpected=CLASSIFIER_PREFIXES,
        )
    elif pretrained_key_map is not None:
        raise ValueError(f"pretrained_key_map={pretrained_key_map!r} given without pretrained")
    return net


@dataclass
class LoadReport:
    """Outcome of :func:`load_pretrained`: keys of the module not in the file (``missing``),
    keys in the file the module lacks (``unexpected``, e.g. ``fc.weight`` of a classifier) and
    keys present in both with different shapes (``mismatched``, skipped)."""

    path: str
    loaded: int
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]


def load_pretrained(
    module: nn.Module,
    path: str | os.PathLike,
    strict: bool = False,
    input_mean: Sequence[float] = IMAGENET_MEAN,
    input_std: Sequence[float] = IMAGENET_STD,
    key_map: str | Callable[[dict, nn.Module], dict] | None = None,
    ignore_unexpected: Sequence[str] = (),
) -> LoadReport:
    """Load pretrained weights from a file into ``module``. Never downloads.

    * a torch state_dict file (``.pth``/``.pt``, e.g. torchvision's ``resnet50-0676ba61.pth``),
      read with ``torch.load(weights_only=True)``: a plain state_dict or a dict with
      ``"state_dict"``/``"model"``; a ``module.`` prefix (DataParallel) is stripped. Loaded
      as stored (torchvision weights expect the ImageNet ``input_mean``/``input_std``).
    * a TFLite flatbuffer (``.tflite``, :class:`MobileNetV2` only), e.g. the ImageNet
      ``mobilenet_v2_1.0_224_quant.tflite`` or the backbone of a DeepLabV3-MobileNetV2: the
      weights are dequantised and mapped by
      :func:`joint_perception.models.tflite_import.mobilenet_v2_state_dict_from_tflite` (batch
      norm folded into the convs, so every BN is an identity carrying the bias), then the
      first conv is rewritten so that the module takes RGB normalised with ``input_mean`` /
      ``input_std`` (in [0, 1] units) instead of TF-slim's [-1, 1]
      (:func:`~joint_perception.models.tflite_import.fold_input_normalization`). For exact
      TF outputs build the module with ``tf_same_padding=True``.

    The keys are then checked against ``module`` the same way for both formats (after
    ``key_map``, which renames the keys of a file in another naming).

    Args:
        module: the network to fill in place.
        path: the weight file; ``.tflite`` (any case) selects the TFLite importer.
        strict: raise when keys or shapes differ instead of loading the matching subset.
            Missing ``num_batches_tracked`` counters (absent from older torchvision files) and
            unexpected keys under ``ignore_unexpected`` are not errors.
        input_mean, input_std: RGB normalisation (per channel, [0, 1] units) the module is
            fed with; used for ``.tflite`` files only. Default: ImageNet (the project's).
        key_map: a name in :data:`PRETRAINED_KEY_MAPS` or a callable ``(state, module) ->
            state`` applied to the file's state_dict before the check.
        ignore_unexpected: key prefixes of the file that are dropped silently (e.g.
            :data:`CLASSIFIER_PREFIXES`).

    Without ``strict`` a partial load is logged as a WARNING with the counts.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KeyError: an unknown ``key_map`` name.
        ValueError: the file holds no state_dict, a ``.tflite`` file for a module other than
            MobileNetV2 or whose graph does not match it, or ``strict=True`` and keys or shapes
            differ (the message names the file, the counts and the first offending keys).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"pretrained weights not found: {path} (the ImageNet initialisation of the recipe's "
            "model.pretrained; docs/data.md, 'Pretrained weights', says where each file comes "
            "from; model.pretrained=null trains from a random initialisation instead, which is "
            "not the papers' setting)"
        )
    if path.lower().endswith(".tflite"):
        obj = _state_dict_from_tflite(module, path, input_mean, input_std)
    else:
        obj = load_weights(path)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state_dict (expected a dict of tensors)")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    if key_map is not None:
        if isinstance(key_map, str):
            if key_map not in PRETRAINED_KEY_MAPS:
                raise KeyError(
                    f"unknown pretrained key map {key_map!r}; known: "
                    f"{', '.join(sorted(PRETRAINED_KEY_MAPS))}"
                )
            key_map = PRETRAINED_KEY_MAPS[key_map]
        state = key_map(state, module)
    state = {k: v for k, v in state.items() if not k.startswith(tuple(ignore_unexpected))}
    own = module.state_dict()
    mismatched = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    usable = {k: v for k, v in state.items() if k in own and k not in mismatched}
    missing = sorted(set(own) - set(usable))
    unexpected = sorted(set(state) - set(own))
    fatal_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if strict and (fatal_missing or unexpected or mismatched):
        hint = ""
        if len(usable) < len(own) // 2:
            hint = (
                " -- most keys differ: the file is in another naming; pass a key map "
                f"(model.pretrained_key_map; known: {', '.join(sorted(PRETRAINED_KEY_MAPS))}) "
                "or convert the file"
            )
        raise ValueError(
            f"{path}: state_dict does not match {type(module).__name__} (loaded {len(usable)} "
            f"of {len(own)} tensors): {len(fatal_missing)} missing {fatal_missing[:5]}, "
            f"{len(unexpected)} unexpected {unexpected[:5]}, {len(mismatched)} "
            f"shape-mismatched {mismatched[:5]}{hint}"
        )
    module.load_state_dict(usable, strict=False)
    report = LoadReport(path, len(usable), missing, unexpected, mismatched)
    partial = fatal_missing or unexpected or mismatched
    (log.warning if partial else log.info)(
        "loaded %d of %d tensors from %s (%d missing, %d unexpected, %d shape-mismatched)",
        report.loaded,
        len(own),
        path,
        len(missing),
        len(unexpected),
        len(mismatched),
    )
    return report


def deeplab_xception_key_map(state: dict, module: nn.Module) -> dict:
    """Rename an Xception-65 state_dict in the common DeepLab-PyTorch naming (the
    ``AlignedXception`` of jfzhang95/pytorch-deeplab-xception, also inside its DeepLabV3+
    checkpoints under ``backbone.``) to :class:`Xception65`'s names.

    Their naming: ``conv1``/``bn1``/``conv2``/``bn2`` (same as ours); ``block1`` .. ``block3``
    (entry), ``block4`` .. ``block19`` (middle flow), ``block20`` (exit block), each with
    ``skip`` / ``skipbn`` and ``rep.<i>`` = separable convs (``conv1`` depthwise, ``bn``,
    ``pointwise``) each followed by a BatchNorm at ``rep.<i+1>``; ``conv3``/``bn3`` ..
    ``conv5``/``bn5`` (exit separable convs and their BNs). Ours: ``block1..3``,
    ``middle.0..15``, ``exit_block``, ``units.<u>`` = :class:`SeparableConv` (``depthwise``,
    ``bn_depth``, ``pointwise``, ``bn_point``), ``skip.0``/``skip.1``, ``exit_convs.0..2``.
    The separable convs of a block are matched in order. Keys outside the backbone of a
    DeepLabV3+ checkpoint (``aspp``, ``decoder``) are dropped; keys it cannot place are kept
    unchanged (the strict check then reports them).

    Raises:
        ValueError: ``module`` is not an :class:`Xception65`, or a block of the file has
            another number of separable convs than ours.
    """
    if not isinstance(module, Xception65):
        raise ValueError(
            f"the deeplab_xception key map is for Xception65, not {type(module).__name__}"
        )
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    out: dict[str, torch.Tensor] = {}
    rest = dict(state)

    def take(src_prefix: str, dst_prefix: str) -> None:
        for k in [k for k in rest if k.startswith(src_prefix)]:
            out[dst_prefix + k[len(src_prefix) :]] = rest.pop(k)

    def ours(k: int) -> tuple[str, nn.Module]:
        if k <= 3:
            return f"block{k}", getattr(module, f"block{k}")
        if k <= 19:
            return f"middle.{k - 4}", module.middle[k - 4]
        return "exit_block", module.exit_block

    for k in range(1, 21):
        dst, block = ours(k)
        src = f"block{k}."
        seps = sorted(
            int(key[len(src + "rep.") :].split(".")[0])
            for key in rest
            if key.startswith(src + "rep.") and key.endswith(".conv1.weight")
        )
        units = [i for i, m in enumerate(block.units) if isinstance(m, SeparableConv)]
        if seps and len(seps) != len(units):
            raise ValueError(
                f"block{k} has {len(seps)} separable convs in the file, {dst} has {len(units)}"
            )
        for i, u in zip(seps, units, strict=False):
            unit = f"{dst}.units.{u}."
            take(f"{src}rep.{i}.conv1.", unit + "depthwise.")
            take(f"{src}rep.{i}.bn.", unit + "bn_depth.")
            take(f"{src}rep.{i}.pointwise.", unit + "pointwise.")
            if i + 1 not in seps:  # the BatchNorm after the separable conv
                take(f"{src}rep.{i + 1}.", unit + "bn_point.")
        take(f"{src}skip.", f"{dst}.skip.0.")
        take(f"{src}skipbn.", f"{dst}.skip.1.")
    for n in (3, 4, 5):
        conv = f"exit_convs.{n - 3}."
        take(f"conv{n}.conv1.", conv + "depthwise.")
        take(f"conv{n}.bn.", conv + "bn_depth.")
        take(f"conv{n}.pointwise.", conv + "pointwise.")
        take(f"bn{n}.", conv + "bn_point.")
    out.update(rest)
    return out


#: named key maps for :func:`load_pretrained` / ``build_backbone(pretrained_key_map=...)``
PRETRAINED_KEY_MAPS: dict[str, Callable[[dict, nn.Module], dict]] = {
    "deeplab_xception": deeplab_xception_key_map,
}


def _state_dict_from_tflite(
    module: nn.Module, path: str, input_mean: Sequence[float], input_std: Sequence[float]
) -> dict[str, torch.Tensor]:
    """MobileNetV2 state_dict from a TFLite file, folded to ``input_mean``/``input_std``."""
    from joint_perception.models import tflite_import  # imports this module

    if not isinstance(module, MobileNetV2):
        raise ValueError(
            f"{path}: TFLite weights load into MobileNetV2 only, not {type(module).__name__}"
        )
    state = tflite_import.mobilenet_v2_state_dict_from_tflite(path, width_mult=module.width_mult)
    return tflite_import.fold_input_normalization(
        state, tflite_import.TF_SLIM_MEAN, tflite_import.TF_SLIM_STD, input_mean, input_std
    )


def calibrate_folded_batchnorm(module: nn.Module, images: Sequence[torch.Tensor]) -> int:
    """Give batch norms that are identities (as :func:`load_pretrained` builds them from a
    TFLite file, where batch norm was folded into the convolutions) the statistics of real data,
    without changing the eval-mode function.

    A folded BN computes ``y = x + b`` (weight 1, running mean 0, running variance ``1 - eps``).
    In training mode it would normalise by batch statistics instead and destroy the pretrained
    features. For every such BN this measures the per-channel mean ``mu`` and variance ``s2`` of
    its input over ``images`` (eval mode, one pass: the function does not change) and sets
    ``running_mean = mu``, ``running_var = s2``, ``weight = sqrt(s2 + eps)``,
    ``bias = b + mu``: eval mode still gives ``x + b`` exactly (up to rounding), and training mode
    now gives approximately the same on batches like ``images`` (data-dependent initialisation
    in the spirit of Kraehenbuehl et al., ICLR 2016).

    Args:
        module: a network containing the folded batch norms (others are left alone: a BN is
            "folded" when its running mean is 0, its running variance ``1 - eps`` and its
            weight 1).
        images: input batches (N, 3, H, W) as ``module`` expects them (normalised).

    Returns:
        The number of batch norms recalibrated.

    Raises:
        ValueError: no images.
    """
    if not images:
        raise ValueError("calibrate_folded_batchnorm needs at least one batch of images")
    folded = [
        m
        for m in module.modules()
        if isinstance(m, nn.BatchNorm2d)
        and m.running_mean is not None
        and torch.all(m.running_mean == 0)
        and torch.allclose(m.running_var, torch.full_like(m.running_var, 1 - m.eps))
        and torch.all(m.weight == 1)
    ]
    if not folded:
        return 0
    sums: dict[nn.Module, list[torch.Tensor]] = {m: [0.0, 0.0, 0] for m in folded}

    def hook(bn, args):
        x = args[0].detach().double()
        acc = sums[bn]
        acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
        acc[1] = acc[1] + (x * x).sum(dim=(0, 2, 3))
        acc[2] += x.numel() // x.shape[1]

    handles = [m.register_forward_pre_hook(hook) for m in folded]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for x in images:
                module(x)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    with torch.no_grad():
        for bn in folded:
            s, s2, n = sums[bn]
            mu = s / n
            var = (s2 / n - mu * mu).clamp_min(0.0)
            bn.running_mean.copy_(mu.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_(torch.sqrt(var + bn.eps).float())
            bn.bias.add_(mu.float())
    return len(folded)
