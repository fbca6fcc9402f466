"""CI-Net: joint depth and segmentation with contextual information (Gao et al., 2022).

Build with ``build_model("cinet", backbone="resnet101")``; architecture as built, parameters
and every departure from the paper are in ``docs/models/cinet.md``.

Data flow for an (N, 3, H, W) input:

1. Dilated ResNet, output stride 8 (dilation 2 and 4 in layer3/layer4) -> (N, 2048, H/8, W/8)
   for ResNet-101; a 1x1 ConvBNReLU reduces it to ``channels``.
2. :class:`SceneUnderstandingModule`: Q, K, V by 1x1 convs, ``A~ = sigmoid(Q^T K / sqrt(d))``
   (N, P, P) with P = H/8 * W/8, ``Y = rownorm(A~) V + X``. A~ is supervised with BCE against
   the ideal affinity of the labels downsampled to (H/8, W/8).
3. Two decoder branches (depth, segmentation) of three upsampling blocks (x2 each, to 1/4,
   1/2, 1/1), each preceded by a :class:`FeatureSharingModule`.
4. Heads: depth = max_depth * sigmoid, segmentation logits, optional unit normals (from the
   depth branch).

Three-stage training (``set_stage``): 1 = ground-truth attention in place of the module
(forward needs the labels: ``forward(x, batch)``), depth + segmentation losses; 2 = the learned
module + attention loss; 3 (and 0, the default) = all losses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from joint_perception.models import losses
from joint_perception.models.backbones import build_backbone
from joint_perception.models.base import JointModel
from joint_perception.models.blocks import ConvBNReLU, SeparableConv, upsample_to
from joint_perception.models.registry import register_model


def ideal_attention(labels: torch.Tensor, num_classes: int, size: tuple[int, int]) -> torch.Tensor:
    """Ideal affinity ``A = M M^T`` of labels at the feature size (CI-Net attention target).

    Args:
        labels: (N, H, W) int, 0 = void, classes 1..num_classes.
        num_classes: C.
        size: (h, w) feature size.

    Returns:
        (N, h*w, h*w) float32, ``A_ij = 1`` when positions i and j carry the same class,
        0 otherwise (void positions have all-zero rows and columns).

    Raises:
        ValueError: a label outside 0..num_classes.
    """

    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise ValueError(
            f"labels must be in 0..{num_classes} (0 = void), got {int(labels.min())}..{int(labels.max())}"
        )
    lab = losses.downsample_labels(labels, size)  # (N, h, w)
    onehot = F.one_hot(lab, num_classes + 1)[..., 1:].permute(0, 3, 1, 2).float()  # void -> 0
    return losses.ideal_affinity(onehot)


def row_normalised_sigmoid(logits: torch.Tensor) -> torch.Tensor:
    """``sigmoid(L) / sum_j sigmoid(L)_ij`` along the last axis, computed as
    ``softmax(log sigmoid(L))`` with ``log sigmoid(l) = min(l, 0) - log(1 + exp(-|l|))``.

    Mathematically the row-normalised sigmoid; numerically every op (Min, Abs, Exp, Log,
    Softmax) keeps a relative accuracy of ~1e-7 for any logit, also in ONNX Runtime, whose
    Sigmoid kernel has only an absolute accuracy of ~1e-7 (see :class:`SceneUnderstandingModule`).

    Args:
        logits: (..., P) float.

    Returns:
        Same shape; each row is non-negative and sums to 1.
    """
    log_sig = torch.clamp(logits, max=0.0) - torch.log(1.0 + torch.exp(-logits.abs()))
    return torch.softmax(log_sig, dim=-1)


class SceneUnderstandingModule(nn.Module):
    """CI-Net scene-understanding (attention) module.

    Args:
        channels: channels of X.
        key_channels: channels of Q and K.

    ``forward(x, attention=None)``: x (N, C, h, w) -> ``(Y, A~, logits)`` with Y (N, C, h, w),
    A~ (N, h*w, h*w) in (0, 1) and its logits (for a numerically safe BCE). When ``attention``
    (N, h*w, h*w) is given (stage 1, the ideal affinity) it replaces A~ and Q, K are unused.
    Aggregation divides each row of the attention by its sum so Y stays on the scale of X for
    any image size: ``Y = rownorm(A~) V + X``.

    The learned attention is row-normalised in log space, ``rownorm(sigmoid(L)) =
    softmax_j(log sigmoid(L_ij))`` with ``log sigmoid(l) = min(l, 0) - log(1 + exp(-|l|))``
    (:func:`row_normalised_sigmoid`): every exported op is then accurate to a *relative* 1e-7.
    ``sigmoid(L) / rowsum`` is not: ONNX Runtime's Sigmoid is accurate only to ~1e-7 in
    *absolute* terms (it returns 0 for logits below about -18 and is 2x off at -17), and a
    trained module has rows whose logits are all strongly negative, so the row sum is tiny and
    the division amplifies those absolute errors into O(1) differences of Y (the ORT/PyTorch
    gap of a trained CI-Net). The given (ideal) attention keeps ``A / (rowsum + 1e-6)`` (void
    rows are all zero); it is used in training only.
    """

    def __init__(self, channels: int, key_channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.key = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.scale = 1.0 / math.sqrt(key_channels)

    def attention_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``Q^T K / sqrt(d)``: (N, C, h, w) -> (N, h*w, h*w); A~ is its sigmoid."""
        q = self.query(x).flatten(2).transpose(1, 2)  # (N, P, d)
        k = self.key(x).flatten(2)  # (N, d, P)
        return torch.matmul(q, k) * self.scale

    def forward(
        self, x: torch.Tensor, attention: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns ``(Y, A, logits)``; ``logits`` is None when ``attention`` was given."""
        n, c, h, w = x.shape
        logits = None
        if attention is None:
            logits = self.attention_logits(x)
            attention = torch.sigmoid(logits)
            a_norm = row_normalised_sigmoid(logits)
        else:
            a_norm = attention / (attention.sum(dim=-1, keepdim=True) + 1e-6)
        v = self.value(x).flatten(2)  # (N, C, P)
        y = torch.matmul(v, a_norm.transpose(1, 2)).reshape(n, c, h, w)
        return y + x, attention, logits


class FeatureSharingModule(nn.Module):
    """CI-Net feature-sharing module between the depth and segmentation branches.

    ``f_d' = f_d + conv1x1_d(C([f_d, f_s]))``, ``f_s' = f_s + conv1x1_s(C([f_d, f_s]))`` with C an
    encoder-decoder of depthwise-separable convs: separable conv stride 2 -> separable conv ->
    bilinear back to the input size -> separable conv.

    Args:
        depth_channels, seg_channels: channels of f_d and f_s.
        mid_channels: width of C.

    ``forward(f_d, f_s)``: (N, Cd, h, w), (N, Cs, h, w) -> same shapes.
    """

    def __init__(self, depth_channels: int, seg_channels: int, mid_channels: int):
        super().__init__()
        self.enc1 = SeparableConv(depth_channels + seg_channels, mid_channels, stride=2)
        self.enc2 = SeparableConv(mid_channels, mid_channels)
        self.dec = SeparableConv(mid_channels, mid_channels)
        self.to_depth = nn.Conv2d(mid_channels, depth_channels, kernel_size=1)
        self.to_seg = nn.Conv2d(mid_channels, seg_channels, kernel_size=1)

    def forward(self, f_d: torch.Tensor, f_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.enc2(self.enc1(torch.cat([f_d, f_s], 1)))
        z = self.dec(upsample_to(z, f_d))
        return f_d + self.to_depth(z), f_s + self.to_seg(z)


@register_model("cinet")
class CINet(JointModel):
    """CI-Net (depth + segmentation, optional normals).

    Args:
        tasks: must contain "depth" and "segmentation"; "normals" adds a normals head.
        num_classes: C (classes 1..C).
        max_depth: metres; depth = max_depth * sigmoid(logit).
        backbone: ResNet name (paper: resnet101), built with dilation in layer3 and layer4
            (output stride 8).
        channels: width after the encoder reduction (the module's C).
        key_channels: Q/K width.
        decoder_channels: widths of the three upsampling blocks.
        att_weight, depth_weight, con_weight, segmentation_weight: paper 1, 1, 5, 0.3.
        pair_weight, depth_normal_weight, num_pixels: inside L_depth (paper 1, 5, 500).
        normals_weight: weight of the optional normals L1 loss.
        pretrained: optional ImageNet state_dict path for the backbone.
        pretrained_key_map: key mapping for a ``pretrained`` file in another naming
            (``models.backbones.PRETRAINED_KEY_MAPS``); the file is loaded strictly.
        scene_module: False removes the scene-understanding module (``Y = X``, no attention,
            no L_att): the ablation baseline of the paper's Table 1 (ours keeps the FSM and
            L_con).

    ``forward(x, batch=None)`` with x (N, 3, H, W) normalised RGB returns ``depth``
    (N, 1, H, W) metres, ``segmentation`` (N, C, H, W) logits, ``normals`` (N, 3, H, W) when asked,
    and ``aux_attention`` (N, P, P), P = ceil(H/8) * ceil(W/8) (the learned A~, or the ideal
    attention in stage 1), ``aux_attention_logits`` (its logits, when learned) and the last
    decoder features ``aux_features_depth`` / ``aux_features_segmentation`` (N,
    decoder_channels[-1], H, W) that L_con uses. In stage 1 and ``self.training``,
    ``batch["labels"]`` (N, H, W)
    replaces A~ by the ideal attention; without a batch, or in eval mode (validation,
    inference, export), the learned module runs.
    """

    def __init__(
        self,
        tasks: Iterable[str] = ("depth", "segmentation"),
        num_classes: int = 40,
        max_depth: float = 10.0,
        backbone: str = "resnet101",
        channels: int = 512,
        key_channels: int = 64,
        decoder_channels: Iterable[int] = (256, 128, 64),
        att_weight: float = 1.0,
        depth_weight: float = 1.0,
        con_weight: float = 5.0,
        segmentation_weight: float = 0.3,
        pair_weight: float = 1.0,
        depth_normal_weight: float = 5.0,
        num_pixels: int = 500,
        normals_weight: float = 1.0,
        pretrained: str | None = None,
        pretrained_key_map: str | None = None,
        scene_module: bool = True,
    ):
        super().__init__(tasks=tasks, num_classes=num_classes, max_depth=max_depth)
        if not {"depth", "segmentation"} <= set(self.tasks) or set(self.tasks) - {
            "depth",
            "segmentation",
            "normals",
        }:
            raise ValueError(
                f"CI-Net tasks must include depth and segmentation (+ optional normals), got {self.tasks}"
            )
        self.backbone_name = backbone
        self.channels = int(channels)
        self.key_channels = int(key_channels)
        self.decoder_channels = tuple(int(c) for c in decoder_channels)
        if len(self.decoder_channels) != 3:
            raise ValueError(
                f"decoder_channels needs 3 widths (1/4, 1/2, 1/1), got {self.decoder_channels}"
            )
        self.weights = {
            "att": float(att_weight),
            "depth": float(depth_weight),
            "con": float(con_weight),
            "segmentation": float(segmentation_weight),
            "pair": float(pair_weight),
            "depth_normal": float(depth_normal_weight),
            "normals": float(normals_weight),
        }
        self.num_pixels = int(num_pixels)

        self.backbone = build_backbone(
            backbone,
            pretrained=pretrained,
            pretrained_key_map=pretrained_key_map,
            replace_stride_with_dilation=(False, True, True),
        )
        self.reduce = ConvBNReLU(self.backbone.channels[-1], self.channels, kernel_size=1)
        self.scene = (
            SceneUnderstandingModule(self.channels, self.key_channels) if scene_module else None
        )

        self.fsm = nn.ModuleList()
        self.depth_blocks = nn.ModuleList()
        self.seg_blocks = nn.ModuleList()
        ci = self.channels
        for co in self.decoder_channels:
            self.fsm.append(FeatureSharingModule(ci, ci, max(ci // 2, 16)))
            self.depth_blocks.append(ConvBNReLU(ci, co, kernel_size=3))
            self.seg_blocks.append(ConvBNReLU(ci, co, kernel_size=3))
            ci = co
        self.depth_head = nn.Conv2d(ci, 1, kernel_size=3, padding=1)
        self.seg_head = nn.Conv2d(ci, self.num_classes, kernel_size=3, padding=1)
        self.normals_head = (
            nn.Conv2d(ci, 3, kernel_size=3, padding=1) if "normals" in self.tasks else None
        )
        # learned sigma of the consistency loss (log for positivity)
        self.log_sigma = nn.Parameter(torch.zeros(()))

    @property
    def num_stages(self) -> int:
        """3 (``set_stage``): 0 (default) or 3: all losses; 1: GT attention, depth + seg;
        2: + attention loss."""
        return 3

    def param_groups(self, lr: float) -> list[dict]:
        """Backbone at ``0.1 * lr`` (paper), everything else at ``lr``."""
        bb = [p for p in self.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in bb}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [
            {"params": bb, "lr": 0.1 * lr, "name": "backbone"},
            {"params": rest, "lr": lr, "name": "head"},
        ]

    def forward(
        self, x: torch.Tensor, batch: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        n, _, h, w = x.shape
        feat = self.reduce(self.backbone.forward_features(x)[-1])
        gt_att = None
        if (
            self.scene is not None
            and self.stage == 1
            and self.training
            and batch is not None
            and "labels" in batch
        ):
            gt_att = ideal_attention(batch["labels"], self.num_classes, tuple(feat.shape[-2:]))
        if self.scene is None:  # ablation: no scene-understanding module
            y, att, att_logits = feat, None, None
        else:
            y, att, att_logits = self.scene(feat, gt_att)
        f_d, f_s = y, y
        sizes = [((h + 3) // 4, (w + 3) // 4), ((h + 1) // 2, (w + 1) // 2), (h, w)]
        for fsm, bd, bs, size in zip(
            self.fsm, self.depth_blocks, self.seg_blocks, sizes, strict=True
        ):
            f_d, f_s = fsm(f_d, f_s)
            f_d = bd(upsample_to(f_d, size))
            f_s = bs(upsample_to(f_s, size))
        out = {
            "depth": self.max_depth * torch.sigmoid(self.depth_head(f_d)),
            "segmentation": self.seg_head(f_s),
            # decoder features for L_con (Eq. 7); not part of the exported graph
            "aux_features_depth": f_d,
            "aux_features_segmentation": f_s,
        }
        if att is not None:
            out["aux_attention"] = att
        if att_logits is not None:
            out["aux_attention_logits"] = att_logits
        if self.normals_head is not None:
            out["normals"] = F.normalize(self.normals_head(f_d), dim=1, eps=1e-6)
        return out

    def compute_losses(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``L = L_att + 1 L_depth + 5 L_con + 0.3 L_seg`` (terms active per stage).

        ``L_depth = berHu + 1 L_pair(500 signed pixel differences) + 5 L_norm`` (normals from
        depth gradients); ``L_seg`` class-weighted cross-entropy (void ignored); ``L_att`` BCE of
        A~ against the ideal affinity; ``L_con`` Eq. 7 on the depth and segmentation decoder
        features (``aux_features_*``) with the ground-truth labels choosing the pairs and the
        learned ``log_sigma`` (:func:`models.losses.consistency_loss`). Stage 1: depth + seg;
        stage 2: + att (not without the scene module); stage 3/0: + con. The optional normals
        L1 loss is active in every stage. Returns ``total`` and every term.
        """

        depth, seg = outputs["depth"], outputs["segmentation"]
        gt = batch["depth"]
        mask = torch.isfinite(gt) & (gt > 0)
        gt = torch.where(mask, gt, torch.zeros_like(gt))
        labels = batch["labels"].long()
        if "has_labels" in batch:
            labels = labels * batch["has_labels"].view(-1, 1, 1).long()
        zero = depth.sum() * 0.0
        terms: dict[str, torch.Tensor] = {}
        if bool(mask.any()):
            terms["berhu"] = losses.berhu_loss(depth, gt, mask)
            terms["pair"] = losses.pairwise_signed_loss(depth, gt, mask, num_pixels=self.num_pixels)
            terms["depth_normal"] = losses.depth_gradient_normal_loss(depth, gt, mask)
        else:
            terms["berhu"] = terms["pair"] = terms["depth_normal"] = zero
        terms["depth"] = (
            terms["berhu"]
            + self.weights["pair"] * terms["pair"]
            + self.weights["depth_normal"] * terms["depth_normal"]
        )
        if bool((labels > 0).any()):
            terms["segmentation"] = losses.cross_entropy_loss(
                seg, labels, weights=losses.class_weights(labels, self.num_classes)
            )
        else:
            terms["segmentation"] = zero
        total = (
            self.weights["depth"] * terms["depth"]
            + self.weights["segmentation"] * terms["segmentation"]
        )
        if "normals" in outputs:
            gn = batch["normals"]
            nmask = gn.abs().sum(1, keepdim=True) > 0
            if "has_normals" in batch:
                nmask = nmask & batch["has_normals"].view(-1, 1, 1, 1).bool()
            terms["normals"] = (
                losses.normal_l1_loss(outputs["normals"], gn, nmask) if bool(nmask.any()) else zero
            )
            total = total + self.weights["normals"] * terms["normals"]
        if self.stage in (0, 2, 3) and "aux_attention" in outputs:
            side = _feature_size(depth.shape[-2:])
            if "aux_attention_logits" in outputs:
                terms["att"] = losses.attention_bce_loss(
                    outputs["aux_attention_logits"], labels, side, from_logits=True
                )
            else:
                terms["att"] = losses.attention_bce_loss(outputs["aux_attention"], labels, side)
            total = total + self.weights["att"] * terms["att"]
        if self.stage in (0, 3):
            terms["con"] = losses.consistency_loss(
                [outputs["aux_features_depth"], outputs["aux_features_segmentation"]],
                labels,
                offsets=(1, 2),
                log_sigma=self.log_sigma,
            )
            total = total + self.weights["con"] * terms["con"]
        terms["total"] = total
        return terms

    def config(self) -> dict:
        """Constructor arguments; ``pretrained`` is left out (the weights travel in the
        state_dict, and the ImageNet file need not exist where the model is rebuilt)."""
        cfg = super().config()
        cfg.update(
            backbone=self.backbone_name,
            channels=self.channels,
            key_channels=self.key_channels,
            decoder_channels=list(self.decoder_channels),
            att_weight=self.weights["att"],
            depth_weight=self.weights["depth"],
            con_weight=self.weights["con"],
            segmentation_weight=self.weights["segmentation"],
            pair_weight=self.weights["pair"],
            depth_normal_weight=self.weights["depth_normal"],
            num_pixels=self.num_pixels,
            normals_weight=self.weights["normals"],
            scene_module=self.scene is not None,
        )
        return cfg


def _feature_size(size: tuple[int, int]) -> tuple[int, int]:
    """Output-stride-8 feature size of a ResNet for an input of ``size`` (H, W)."""
    h, w = size
    for _ in range(3):  # conv1 stride 2, maxpool stride 2, layer2 stride 2 (all ceil)
        h, w = (h + 1) // 2, (w + 1) // 2
    return h, w
