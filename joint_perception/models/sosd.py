"""SOSD-Net: joint semantic object segmentation and depth estimation (He et al., 2021).

Build with ``build_model("sosd", backbone="xception65")``; the architecture as built, its
parameter count and every departure from the paper are in ``docs/models/sosd.md``.

Data flow for an (N, 3, H, W) normalised RGB input (s = stride of the low-level feature, 4):

1. Encoder (DeepLabV3+): backbone at output stride 16 (Xception-65; ResNets with a dilated
   last stage for light variants) -> ASPP (1x1, three atrous 3x3, image-level pooling) ->
   (N, 256, H/16, W/16), bilinearly upsampled to the low-level feature (H/s, W/s).
2. Decoder, three maps from ``[conv1x1_48_t(low), aspp_up]`` (304 channels), one 48-channel
   1x1 reduction per map t:
   semantic feature ``S`` (conv 256 3x3), depth feature ``D`` (conv 256 3x3 -> conv 64 3x3),
   common representation ``R`` (conv 256 1x1).
3. Semantic-to-depth (:class:`SemanticToDepth`): from the pinhole relation
   ``d^2 = fx fy dX dY / (du dv)``: ``R`` -> conv2 3x3 -> conv1 3x3 is the 3D area term
   ``a3 ~ fx fy dX dY``, ``S`` -> conv2 3x3 -> conv1 3x3 the inverse 2D area term
   ``a2 ~ 1 / (du dv)``; each is made positive with softplus and
   ``g = sqrt(softplus(a3) * softplus(a2) + eps)`` is a geometric depth cue (> 0).
   ``[g, D]`` -> conv1 5x5 -> softplus -> bilinear to (H, W) = depth (metres, > 0).
4. Depth-to-semantic (:class:`DepthToSemantic`): ``D`` -> conv64 3x3 -> conv32 3x3 and
   ``R`` -> conv64 3x3 -> conv32 3x3, pixel product -> conv32 1x1, concatenated with ``S`` ->
   conv(C) 3x3 -> bilinear to (H, W) = segmentation logits.

Training: L1 depth (or L1 on inverse depth, ``depth_output="inverse"``, the paper's disparity
loss for Cityscapes) and cross-entropy. EM-style alternation: :meth:`SOSDNet.em_groups` gives
(depth-side + shared, semantic-side + shared) parameters and :meth:`SOSDNet.em_step_losses`
the loss of each step; the trainer alternates every iteration (alpha = 1).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from joint_perception.models import losses
from joint_perception.models.backbones import build_backbone
from joint_perception.models.base import JointModel
from joint_perception.models.blocks import ASPP, ConvBNReLU, upsample_to
from joint_perception.models.registry import register_model

DEPTH_OUTPUTS = ("depth", "inverse")
_INV_DEPTH_FLOOR = 1e-3  # 1/m: inverse-depth floor, i.e. depth <= 1000 m


def _backbone_kwargs(name: str, output_stride: int) -> dict:
    """Backbone arguments for a DeepLabV3+ encoder at ``output_stride`` (8 or 16)."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    if name.startswith("xception"):
        return {"output_stride": output_stride}
    if name.startswith("resnet"):
        dil = (False, output_stride == 8, True)
        return {"replace_stride_with_dilation": dil}
    raise ValueError(f"SOSD-Net supports xception65 and resnet* backbones, got {name!r}")


class SemanticToDepth(nn.Module):
    """Semantic-to-depth module: geometric cue from the pinhole area relation, fused with D.

    ``d^2 = fx fy dX dY / (du dv)`` (a patch of metric area dX dY imaged on du dv pixels).
    The focal product is absorbed into the learned 3D area term (the network sees no
    intrinsics), so depth is metric for the training camera (canonical focal length).

    Args:
        sem_ch, common_ch, depth_ch: channels of S, R and D.
        eps: added under the square root (finite gradient at 0).

    ``forward(S, D, R) -> (z, g)``: ``z`` (N, 1, h, w) pre-activation depth, ``g`` (N, 1, h, w)
    the positive geometric cue ``sqrt(softplus(a3) softplus(a2) + eps)``.
    """

    def __init__(
        self, sem_ch: int = 256, common_ch: int = 256, depth_ch: int = 64, eps: float = 1e-6
    ):
        super().__init__()
        self.eps = float(eps)
        self.area3d = nn.Sequential(ConvBNReLU(common_ch, 2, 3), nn.Conv2d(2, 1, 3, padding=1))
        self.inv_area2d = nn.Sequential(ConvBNReLU(sem_ch, 2, 3), nn.Conv2d(2, 1, 3, padding=1))
        self.fuse = nn.Conv2d(depth_ch + 1, 1, 5, padding=2)

    def geometric_cue(self, sem: torch.Tensor, common: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w) > 0: ``sqrt(softplus(a3(R)) * softplus(a2(S)) + eps)``."""
        a3 = F.softplus(self.area3d(common))
        a2 = F.softplus(self.inv_area2d(sem))
        return torch.sqrt(a3 * a2 + self.eps)

    def forward(self, sem, depth_feat, common):
        g = self.geometric_cue(sem, common)
        return self.fuse(torch.cat([g, depth_feat], dim=1)), g


class DepthToSemantic(nn.Module):
    """Depth-to-semantic module: depth/common interaction fused into the classifier.

    ``D`` -> conv64 3x3 -> conv32 3x3, ``R`` -> conv64 3x3 -> conv32 3x3, pixel product ->
    conv32 1x1, concatenated with ``S`` -> conv(C) 3x3.

    ``forward(S, D, R) -> (N, C, h, w)`` logits at the decoder resolution.
    """

    def __init__(
        self, num_classes: int, sem_ch: int = 256, common_ch: int = 256, depth_ch: int = 64
    ):
        super().__init__()
        self.from_depth = nn.Sequential(ConvBNReLU(depth_ch, 64, 3), ConvBNReLU(64, 32, 3))
        self.from_common = nn.Sequential(ConvBNReLU(common_ch, 64, 3), ConvBNReLU(64, 32, 3))
        self.mix = ConvBNReLU(32, 32, 1)
        self.classifier = nn.Conv2d(sem_ch + 32, num_classes, 3, padding=1)

    def forward(self, sem, depth_feat, common):
        inter = self.mix(self.from_depth(depth_feat) * self.from_common(common))
        return self.classifier(torch.cat([sem, inter], dim=1))


@register_model("sosd")
class SOSDNet(JointModel):
    """SOSD-Net (depth + segmentation, optional normals head).

    Args:
        tasks: ``("depth", "segmentation")`` (the paper) optionally plus ``"normals"``.
        num_classes: C (NYUv2: 40; Cityscapes: 19).
        max_depth: metres (metadata; the output is not clipped).
        backbone: ``"xception65"`` (paper) or a ``"resnet*"`` name (lighter, for tests/speed).
        output_stride: encoder output stride, 16 (paper) or 8.
        depth_output: ``"depth"`` (L1 on metres, NYUv2) or ``"inverse"`` (the head predicts
            inverse depth in 1/m and the L1 loss is on inverse depth: the paper's disparity
            loss for Cityscapes up to the constant fx * baseline).
        pretrained: optional path to an ImageNet state_dict for the backbone.
        pretrained_key_map: key mapping for a ``pretrained`` file in another naming
            (``models.backbones.PRETRAINED_KEY_MAPS``); the file is loaded strictly.

    Outputs of ``forward``: ``depth`` (N, 1, H, W) metres > 0, ``segmentation`` (N, C, H, W),
    ``normals`` (N, 3, H, W) unit when asked, ``aux_geometric`` (N, 1, h, w) the positive
    semantic-to-depth cue, ``aux_inv_depth`` (N, 1, H, W) 1/m for ``depth_output="inverse"``.

    Raises:
        ValueError: unsupported tasks, backbone, output stride or depth output.
    """

    def __init__(
        self,
        tasks: Iterable[str] = ("depth", "segmentation"),
        num_classes: int = 40,
        max_depth: float = 10.0,
        backbone: str = "xception65",
        output_stride: int = 16,
        depth_output: str = "depth",
        pretrained: str | None = None,
        pretrained_key_map: str | None = None,
    ):
        super().__init__(tasks=tasks, num_classes=num_classes, max_depth=max_depth)
        if not {"depth", "segmentation"} <= set(self.tasks) or set(self.tasks) - {
            "depth",
            "segmentation",
            "normals",
        }:
            raise ValueError(
                f"SOSD-Net needs tasks depth and segmentation (+ optional normals), got {self.tasks}"
            )
        if depth_output not in DEPTH_OUTPUTS:
            raise ValueError(f"depth_output must be one of {DEPTH_OUTPUTS}, got {depth_output!r}")
        self.backbone_name = backbone
        self.output_stride = int(output_stride)
        self.depth_output = depth_output

        self.backbone = build_backbone(
            backbone,
            pretrained=pretrained,
            pretrained_key_map=pretrained_key_map,
            **_backbone_kwargs(backbone, self.output_stride),
        )
        low_ch, high_ch = self.backbone.channels[0], self.backbone.channels[-1]
        rates = (6, 12, 18) if self.output_stride == 16 else (12, 24, 36)
        self.aspp = ASPP(high_ch, 256, rates, separable=backbone.startswith("xception"))
        cat_ch = 48 + 256
        # shared: backbone, ASPP, common representation
        self.low_common = ConvBNReLU(low_ch, 48, 1)
        self.common = ConvBNReLU(cat_ch, 256, 1)
        # semantic side
        self.low_sem = ConvBNReLU(low_ch, 48, 1)
        self.sem_feat = ConvBNReLU(cat_ch, 256, 3)
        self.d2s = DepthToSemantic(num_classes)
        # depth side
        self.low_depth = ConvBNReLU(low_ch, 48, 1)
        self.depth_feat = nn.Sequential(ConvBNReLU(cat_ch, 256, 3), ConvBNReLU(256, 64, 3))
        self.s2d = SemanticToDepth()
        if "normals" in self.tasks:
            self.normals_head = nn.Sequential(ConvBNReLU(64 + 256, 64, 3), nn.Conv2d(64, 3, 1))

    # ------------------------------------------------------------------ parameter groups
    def _shared_modules(self) -> list[nn.Module]:
        return [self.backbone, self.aspp, self.low_common, self.common]

    def _depth_modules(self) -> list[nn.Module]:
        mods = [self.low_depth, self.depth_feat, self.s2d]
        if "normals" in self.tasks:
            mods.append(self.normals_head)
        return mods

    def _semantic_modules(self) -> list[nn.Module]:
        return [self.low_sem, self.sem_feat, self.d2s]

    @staticmethod
    def _params(mods: list[nn.Module]) -> list[nn.Parameter]:
        return [p for m in mods for p in m.parameters()]

    def em_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(depth step, semantic step) parameters; the shared encoder and the common
        representation are in both (alpha = 1: the backbone is updated in every step).

        Depth side: depth low-level reduction, depth feature, semantic-to-depth module
        (+ normals head). Semantic side: semantic low-level reduction, semantic feature,
        depth-to-semantic module.
        """
        shared = self._params(self._shared_modules())
        return (
            shared + self._params(self._depth_modules()),
            shared + self._params(self._semantic_modules()),
        )

    def em_step_losses(self, terms: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Split :meth:`compute_losses` output into (depth-step loss, semantic-step loss).

        The depth step takes the depth loss (+ the normals loss when the head exists).
        """
        depth_step = terms["depth"]
        if "normals" in terms:
            depth_step = depth_step + terms["normals"]
        return depth_step, terms["segmentation"]

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        feats = self.backbone.forward_features(x)
        low, high = feats[0], feats[-1]
        enc = upsample_to(self.aspp(high), low)
        common = self.common(torch.cat([self.low_common(low), enc], dim=1))
        sem = self.sem_feat(torch.cat([self.low_sem(low), enc], dim=1))
        dfeat = self.depth_feat(torch.cat([self.low_depth(low), enc], dim=1))

        z, g = self.s2d(sem, dfeat, common)
        q = upsample_to(F.softplus(z), (h, w))  # bilinear of a positive map stays positive
        out: dict[str, torch.Tensor] = {"aux_geometric": g}
        if self.depth_output == "inverse":
            out["aux_inv_depth"] = q
            out["depth"] = 1.0 / q.clamp_min(_INV_DEPTH_FLOOR)
        else:
            out["depth"] = q
        out["segmentation"] = upsample_to(self.d2s(sem, dfeat, common), (h, w))
        if "normals" in self.tasks:
            n = upsample_to(self.normals_head(torch.cat([dfeat, sem], dim=1)), (h, w))
            out["normals"] = F.normalize(n, dim=1, eps=1e-6)
        return out

    # ------------------------------------------------------------------ losses
    def compute_losses(self, outputs, batch):
        """``depth``: L1 (metres, or 1/m for ``depth_output="inverse"``); ``segmentation``:
        cross-entropy (void ignored, samples without labels skipped); ``normals``: cosine.
        ``total`` = sum (used when training without EM alternation).
        """
        gt = batch["depth"]
        if self.depth_output == "inverse":
            inv_gt = torch.where(gt > 0, 1.0 / gt.clamp_min(1e-6), torch.zeros_like(gt))
            l_depth = losses.l1_loss(outputs["aux_inv_depth"], inv_gt)
        else:
            l_depth = losses.l1_loss(outputs["depth"], gt)
        labels = batch["labels"]
        if "has_labels" in batch:
            labels = labels * batch["has_labels"].view(-1, 1, 1).to(labels.dtype)
        l_seg = losses.cross_entropy_loss(outputs["segmentation"], labels)
        terms = {"depth": l_depth, "segmentation": l_seg}
        if "normals" in self.tasks:
            nt = batch["normals"]
            if "has_normals" in batch:
                nt = nt * batch["has_normals"].view(-1, 1, 1, 1).to(nt.dtype)
            terms["normals"] = losses.normal_cosine_loss(outputs["normals"], nt)
        terms["total"] = sum(terms.values())
        return terms

    def config(self) -> dict:
        """Constructor arguments; ``pretrained`` is left out (the weights travel in the
        state_dict, and the ImageNet file need not exist where the model is rebuilt)."""
        cfg = super().config()
        cfg.update(
            backbone=self.backbone_name,
            output_stride=self.output_stride,
            depth_output=self.depth_output,
        )
        return cfg
