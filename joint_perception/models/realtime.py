"""The default shipped network: a real-time joint depth / segmentation / normals model.

Architecture (documented choices, no single paper):

* Encoder: MobileNetV2 (Sandler et al., CVPR 2018), torchvision parameter names under
  ``encoder.``, features at strides 4, 8, 16, 32 (24, 32, 96, 320 channels at width 1.0).
* Decoder: a light FPN (Lin et al., CVPR 2017): 1x1 ConvBNReLU laterals to ``decoder_channels``,
  top-down bilinear upsampling + addition down to stride 4, then one depthwise-separable 3x3
  smoothing conv. The stride-4 map is shared by the three heads.
* Heads (stride 4, then bilinear upsampling of the few output channels to the input size):
  separable 3x3 conv + 1x1 conv each. Depth ``max_depth * sigmoid(x)`` (metres, in
  (0, max_depth)); segmentation logits for classes 1..C; normals L2-normalised after the
  upsampling so they are unit vectors at every output pixel (camera optical frame, REP 103).
* Losses: berHu on valid depth (Laina et al. 2016), class-weighted cross-entropy with void
  ignored, ``1 - cos`` normal loss; fixed weights or homoscedastic uncertainty weighting
  (Kendall et al., CVPR 2018). The functions live with the networks in
  :mod:`joint_perception.models.losses`.

Everything exports to ONNX opset 17 with static shapes (see ``export.onnx_export``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from joint_perception.models import losses
from joint_perception.models.backbones import (
    calibrate_folded_batchnorm,
    load_pretrained,
    mobilenet_v2,
)
from joint_perception.models.base import JointModel
from joint_perception.models.blocks import ConvBNReLU, SeparableConv, upsample_to
from joint_perception.models.registry import register_model


class _Head(nn.Sequential):
    """Separable 3x3 conv (in -> mid) then a 1x1 conv with bias to ``out`` channels."""

    def __init__(self, in_ch: int, mid: int, out: int):
        super().__init__(SeparableConv(in_ch, mid), nn.Conv2d(mid, out, 1))


@register_model("realtime")
class RealtimeJointNet(JointModel):
    """MobileNetV2 + FPN decoder + depth / 40-class segmentation / normal heads.

    Args:
        tasks: subset of ("depth", "segmentation", "normals").
        num_classes: C (classes 1..C; void excluded).
        max_depth: metres; depth output is ``max_depth * sigmoid``.
        width_mult: MobileNetV2 width (1.0 default; 0.75 for slower devices).
        decoder_channels: FPN channels (shared by the heads).
        head_channels: channels of each head's hidden layer.
        loss_weighting: ``"fixed"`` (``loss_weights``) or ``"uncertainty"`` (learned,
            Kendall et al. 2018; adds ``loss_weighting_module.log_vars``).
        loss_weights: fixed weights by loss name ``depth``/``segmentation``/``normals`` (default 1).
        class_weights: optional C per-class CE weights (e.g. from
            ``models.losses.class_weights`` on the training set).
        pretrained_backbone: path of ImageNet weights for the encoder, never downloaded: a
            torchvision MobileNetV2 state_dict file, or a TF-slim MobileNetV2 ``.tflite``
            (e.g. ``mobilenet_v2_1.0_224_quant.tflite``; its folded batch norms get data
            statistics in :meth:`calibrate` before training). Not part of :meth:`config`.

    ``forward(x)``: x (N, 3, H, W) normalised RGB -> ``{"depth": (N,1,H,W) metres,
    "segmentation": (N,C,H,W) logits, "normals": (N,3,H,W) unit}`` (only the configured tasks).
    """

    def __init__(
        self,
        tasks: Iterable[str] = ("depth", "segmentation", "normals"),
        num_classes: int = 40,
        max_depth: float = 10.0,
        width_mult: float = 1.0,
        decoder_channels: int = 64,
        head_channels: int = 32,
        loss_weighting: str = "fixed",
        loss_weights: Mapping[str, float] | None = None,
        class_weights: Sequence[float] | None = None,
        pretrained_backbone: str | os.PathLike | None = None,
    ):
        super().__init__(tasks, num_classes, max_depth)
        if loss_weighting not in ("fixed", "uncertainty"):
            raise ValueError(
                f"loss_weighting must be 'fixed' or 'uncertainty', got {loss_weighting!r}"
            )
        if class_weights is not None and len(class_weights) != self.num_classes:
            raise ValueError(
                f"class_weights has {len(class_weights)} entries, need {self.num_classes}"
            )
        self.width_mult = float(width_mult)
        self.decoder_channels = int(decoder_channels)
        self.head_channels = int(head_channels)
        self.loss_weighting = loss_weighting
        self.loss_weights = {k: float(v) for k, v in (loss_weights or {}).items()}
        unknown = set(self.loss_weights) - set(self.tasks)
        if unknown:
            raise ValueError(f"loss_weights for unknown losses {sorted(unknown)}")

        self.encoder = mobilenet_v2(self.width_mult, last_conv=False)
        if pretrained_backbone:
            load_pretrained(self.encoder, pretrained_backbone)
        d = self.decoder_channels
        self.laterals = nn.ModuleList(ConvBNReLU(c, d, 1) for c in self.encoder.channels)
        self.smooth = SeparableConv(d, d)
        self.heads = nn.ModuleDict()
        if "depth" in self.tasks:
            self.heads["depth"] = _Head(d, self.head_channels, 1)
        if "segmentation" in self.tasks:
            self.heads["segmentation"] = _Head(d, self.head_channels, self.num_classes)
        if "normals" in self.tasks:
            self.heads["normals"] = _Head(d, self.head_channels, 3)

        if class_weights is None:
            self.register_buffer("class_weights", None, persistent=False)
        else:
            cw = torch.as_tensor(list(class_weights), dtype=torch.float32)
            self.register_buffer("class_weights", cw, persistent=False)
        self.loss_weighting_module: nn.Module | None = None
        if loss_weighting == "uncertainty":
            self.loss_weighting_module = losses.UncertaintyWeighting(len(self.tasks))

    def calibrate(self, images: list[torch.Tensor]) -> int:
        """Give the encoder's folded batch norms (ImageNet weights from a TFLite file) the
        statistics of ``images`` (:func:`~joint_perception.models.backbones.calibrate_folded_batchnorm`)."""
        return calibrate_folded_batchnorm(self.encoder, images)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Shared stride-4 decoder feature (N, decoder_channels, ceil(H/4), ceil(W/4))."""
        feats = self.encoder.forward_features(x)
        p = self.laterals[-1](feats[-1])
        for lateral, f in zip(reversed(self.laterals[:-1]), reversed(feats[:-1])):
            lat = lateral(f)
            p = lat + upsample_to(p, lat)
        return self.smooth(p)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.decode(x)
        out: dict[str, torch.Tensor] = {}
        if "depth" in self.heads:
            out["depth"] = self.max_depth * torch.sigmoid(upsample_to(self.heads["depth"](f), x))
        if "segmentation" in self.heads:
            out["segmentation"] = upsample_to(self.heads["segmentation"](f), x)
        if "normals" in self.heads:
            out["normals"] = F.normalize(upsample_to(self.heads["normals"](f), x), dim=1, eps=1e-6)
        return out

    def compute_losses(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """berHu + weighted CE + normal cosine, combined with fixed or uncertainty weights.

        Samples whose ``has_labels`` / ``has_normals`` is False contribute no segmentation /
        normal loss. A target missing from ``batch`` drops that loss (weight 0).

        Returns:
            ``{"total", "depth", "segmentation", "normals"}`` 0-dim tensors (the tasks present).
        """

        terms: dict[str, torch.Tensor] = {}
        if "depth" in outputs and "depth" in batch:
            terms["depth"] = losses.berhu_loss(outputs["depth"], batch["depth"])
        if "segmentation" in outputs and "labels" in batch:
            labels = batch["labels"].long()
            if "has_labels" in batch:
                labels = labels * batch["has_labels"].to(labels.dtype).view(-1, 1, 1)
            terms["segmentation"] = losses.cross_entropy_loss(
                outputs["segmentation"], labels, self.class_weights
            )
        if "normals" in outputs and "normals" in batch:
            mask = None
            if "has_normals" in batch:
                n, _, h, w = batch["normals"].shape
                mask = batch["has_normals"].to(torch.bool).view(-1, 1, 1).expand(n, h, w)
            terms["normals"] = losses.normal_cosine_loss(outputs["normals"], batch["normals"], mask)
        if not terms:
            raise ValueError(
                f"batch {sorted(batch)} has no target for the outputs {sorted(outputs)}"
            )
        if self.loss_weighting_module is not None:
            order = list(self.tasks)
            total = self.loss_weighting_module(
                [terms.get(k, outputs[next(iter(outputs))].sum() * 0.0) for k in order]
            )
        else:
            total = losses.fixed_weighting(
                terms, {k: v for k, v in self.loss_weights.items() if k in terms}
            )
        return {"total": total, **terms}

    def config(self) -> dict:
        cfg = super().config()
        cfg.update(
            width_mult=self.width_mult,
            decoder_channels=self.decoder_channels,
            head_channels=self.head_channels,
            loss_weighting=self.loss_weighting,
            loss_weights=dict(self.loss_weights),
            class_weights=None if self.class_weights is None else self.class_weights.tolist(),
        )
        return cfg
