"""PAP: Pattern-Affinitive Propagation (Zhang, Cui, Xu, Yan, Sebe, Yang, CVPR 2019).

Joint depth, surface normals and NYUv2 segmentation from one RGB image. Build with
``build_model("pap", backbone="resnet50", affinity_scale=8)``; the architecture as built,
its parameters and every departure from the paper are in ``docs/models/pap.md``.

Data flow (shapes for an (N, 3, H, W) input, affinity scale s in {4, 8, 16}, C channels):

1. Shared encoder (ResNet, torchvision names) -> stage features at 1/4, 1/8, 1/16, 1/32.
2. Multi-scale fusion: every stage -> 1x1 ConvBNReLU -> resized to (H/s, W/s), concatenated,
   3x3 ConvBNReLU -> shared feature ``g`` (N, C, H/s, W/s).
3. Per task T: two residual blocks on ``g`` -> task feature ``f_T`` (N, C, H/s, W/s); a 1x1
   conv -> initial prediction ``p_T`` (1 / 3 / num_classes channels).
4. Affinity learning per task from ``[f_T, g]`` (2C channels), cross-task combination with
   softmax ``alpha``, task-specific diffusion of ``[f_T, p_T]`` (t* iterations, beta)
   -- :mod:`joint_perception.models.affinity`.
5. Reconstruction: per stage a shared up-projection chain (on ``g``) and a task-specific
   up-projection (on the diffused task map), concatenated, one residual block;
   log2(s) - 1 stages reach 1/2 resolution, a 3x3 conv predicts, bilinear upsampling gives
   the input size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from joint_perception.models import losses
from joint_perception.models.affinity import AffinityLearning, CrossTaskPropagation, TaskPropagation
from joint_perception.models.backbones import build_backbone
from joint_perception.models.base import JointModel
from joint_perception.models.blocks import ConvBNReLU, ResidualBlock, UpProjection, upsample_to
from joint_perception.models.registry import register_model

AFFINITY_SCALES = (4, 8, 16)


def _pred_channels(task: str, num_classes: int) -> int:
    return {"depth": 1, "normals": 3, "segmentation": num_classes}[task]


class _TaskReconstruction(nn.Module):
    """Task-specific half of PAP's reconstruction (the shared up-projections live in PAPNet)."""

    def __init__(self, in_channels: int, stage_channels: list[int], out_channels: int):
        super().__init__()
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        c = in_channels
        for co in stage_channels:
            self.ups.append(UpProjection(c, co))
            self.fuse.append(ResidualBlock(2 * co, co))
            c = co
        self.head = nn.Conv2d(c, out_channels, kernel_size=3, padding=1)

    def forward(self, h: torch.Tensor, shared: list[torch.Tensor]) -> torch.Tensor:
        for up, fuse, s in zip(self.ups, self.fuse, shared, strict=True):
            h = fuse(torch.cat([upsample_to(up(h), s), s], dim=1))
        return self.head(h)


@register_model("pap")
class PAPNet(JointModel):
    """Pattern-Affinitive Propagation network (depth + normals + segmentation).

    Args:
        tasks: subset of ("depth", "segmentation", "normals"), at least one; the affinity
            combination runs over the tasks present.
        num_classes: C segmentation classes (1..C; void excluded).
        max_depth: metres; depth = max_depth * sigmoid(logit).
        backbone: encoder name for ``backbones.build_backbone`` (paper: resnet50).
        affinity_scale: 4, 8 or 16 -- the affinity is computed at 1/scale of the input.
        channels: C of the shared/task features at the affinity scale.
        iterations: t*, task-specific diffusion steps.
        beta: diffusion weight in ``h_out = beta h^t* + (1 - beta) h^0`` (paper 0.05).
        subsample: source pooling factor of the affinity (2 = 1/4 of the pairs).
        task_weight: lambda_T for every task (paper 1/3).
        pair_weight: xi_T for every task (paper 0.2).
        num_pairs: random pixel pairs per task for the pair-wise loss (paper 300).
        initial_loss_weight: optional deep supervision of the initial predictions at the
            affinity scale (0 = the paper's loss exactly).
        pretrained: optional path to an ImageNet state_dict for the backbone.
        pretrained_key_map: key mapping for a ``pretrained`` file in another naming
            (``models.backbones.PRETRAINED_KEY_MAPS``); the file is loaded strictly.

    ``forward(x)`` with x (N, 3, H, W) normalised RGB returns ``depth`` (N, 1, H, W) metres,
    ``segmentation`` (N, C, H, W) logits, ``normals`` (N, 3, H, W) unit (only the tasks present), plus
    ``aux_affinity`` (N, T, H/s*W/s, ceil(H/2s)*ceil(W/2s)) learned per-task affinities,
    ``aux_affinity_combined`` (same shape, after cross-task mixing) and
    ``aux_initial_<task>`` initial predictions at the affinity scale (depth in metres,
    normals unit, segmentation logits). Any H, W >= 32 works (feature grids use floor
    division); multiples of 32 keep the encoder and affinity grids aligned.
    """

    def __init__(
        self,
        tasks: Iterable[str] = ("depth", "segmentation", "normals"),
        num_classes: int = 40,
        max_depth: float = 10.0,
        backbone: str = "resnet50",
        affinity_scale: int = 8,
        channels: int = 256,
        iterations: int = 2,
        beta: float = 0.05,
        subsample: int = 2,
        task_weight: float = 1.0 / 3.0,
        pair_weight: float = 0.2,
        num_pairs: int = 300,
        initial_loss_weight: float = 0.0,
        pretrained: str | None = None,
        pretrained_key_map: str | None = None,
    ):
        super().__init__(tasks=tasks, num_classes=num_classes, max_depth=max_depth)
        if not self.tasks or set(self.tasks) - {"depth", "segmentation", "normals"}:
            raise ValueError(
                f"PAP tasks must be a non-empty subset of depth/segmentation/normals, got {self.tasks}"
            )
        if affinity_scale not in AFFINITY_SCALES:
            raise ValueError(
                f"affinity_scale must be one of {AFFINITY_SCALES}, got {affinity_scale}"
            )
        self.backbone_name = backbone
        self.affinity_scale = int(affinity_scale)
        self.channels = int(channels)
        self.iterations = int(iterations)
        self.beta = float(beta)
        self.subsample = int(subsample)
        self.task_weight = float(task_weight)
        self.pair_weight = float(pair_weight)
        self.num_pairs = int(num_pairs)
        self.initial_loss_weight = float(initial_loss_weight)

        self.backbone = build_backbone(
            backbone, pretrained=pretrained, pretrained_key_map=pretrained_key_map
        )
        c = self.channels
        proj = max(c // 4, 16)
        self.stage_proj = nn.ModuleList(
            ConvBNReLU(ch, proj, kernel_size=1) for ch in self.backbone.channels
        )
        self.fuse = ConvBNReLU(proj * len(self.backbone.channels), c, kernel_size=3)

        self.task_nets = nn.ModuleDict(
            {t: nn.Sequential(ResidualBlock(c, c), ResidualBlock(c, c)) for t in self.tasks}
        )
        self.initial_heads = nn.ModuleDict(
            {
                t: nn.Conv2d(c, _pred_channels(t, self.num_classes), kernel_size=1)
                for t in self.tasks
            }
        )
        self.affinity = nn.ModuleDict(
            {t: AffinityLearning(2 * c, c, subsample=self.subsample) for t in self.tasks}
        )
        self.cross_task = CrossTaskPropagation(len(self.tasks))
        self.propagation = TaskPropagation(self.iterations, self.beta, self.subsample)

        n_stages = int(math.log2(self.affinity_scale)) - 1
        stage_channels = [max(c // 2 ** (i + 1), 16) for i in range(n_stages)]
        self.shared_up = nn.ModuleList()
        ci = c
        for co in stage_channels:
            self.shared_up.append(UpProjection(ci, co))
            ci = co
        self.reconstruct = nn.ModuleDict(
            {
                t: _TaskReconstruction(
                    c + _pred_channels(t, self.num_classes),
                    stage_channels,
                    _pred_channels(t, self.num_classes),
                )
                for t in self.tasks
            }
        )

    # ------------------------------------------------------------------ forward
    def _activate(self, task: str, raw: torch.Tensor) -> torch.Tensor:
        if task == "depth":
            return self.max_depth * torch.sigmoid(raw)
        if task == "normals":
            return F.normalize(raw, dim=1, eps=1e-6)
        return raw

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        feats = self.backbone.forward_features(x)
        size = (h // self.affinity_scale, w // self.affinity_scale)
        g = self.fuse(
            torch.cat(
                [upsample_to(p(f), size) for p, f in zip(self.stage_proj, feats, strict=True)], 1
            )
        )

        task_feat = {t: self.task_nets[t](g) for t in self.tasks}
        initial = {t: self.initial_heads[t](task_feat[t]) for t in self.tasks}
        affin = torch.stack([self.affinity[t](torch.cat([task_feat[t], g], 1)) for t in self.tasks])
        combined = self.cross_task(affin)  # (T, N, P, S)

        shared = []
        s = g
        for up in self.shared_up:
            s = up(s)
            shared.append(s)

        out: dict[str, torch.Tensor] = {}
        for i, t in enumerate(self.tasks):
            h0 = torch.cat([task_feat[t], initial[t]], 1)
            hp = self.propagation(h0, combined[i])
            raw = upsample_to(self.reconstruct[t](hp, shared), (h, w))
            out[t] = self._activate(t, raw)
            out[f"aux_initial_{t}"] = self._activate(t, initial[t])
        out["aux_affinity"] = affin.transpose(0, 1)
        out["aux_affinity_combined"] = combined.transpose(0, 1)
        return out

    # ------------------------------------------------------------------ losses
    def _task_terms(self, task: str, pred: torch.Tensor, batch: dict[str, torch.Tensor]):
        """(task loss, pair-wise loss) of one task, targets resized (nearest) to pred's size."""

        size = tuple(pred.shape[-2:])
        if task == "depth":
            gt = batch["depth"]
            if tuple(gt.shape[-2:]) != size:
                gt = F.interpolate(gt, size=size, mode="nearest")
            return losses.berhu_loss(pred, gt), losses.pairwise_distance_loss(
                pred, gt, num_pairs=self.num_pairs
            )
        if task == "normals":
            gt = batch["normals"]
            if tuple(gt.shape[-2:]) != size:
                gt = F.interpolate(gt, size=size, mode="nearest")
            mask = torch.isfinite(gt).all(1) & (gt.abs().sum(1) > 0)
            if "has_normals" in batch:
                mask = mask & batch["has_normals"].view(-1, 1, 1).bool()
            gt = torch.where(mask[:, None], gt, torch.zeros_like(gt))
            return losses.normal_l1_loss(pred, gt, mask), losses.pairwise_distance_loss(
                pred, gt, mask, num_pairs=self.num_pairs
            )
        labels = batch["labels"].long()
        if tuple(labels.shape[-2:]) != size:
            labels = losses.downsample_labels(labels, size)
        if "has_labels" in batch:
            labels = labels * batch["has_labels"].view(-1, 1, 1).long()
        onehot = F.one_hot(labels, self.num_classes + 1)[..., 1:].permute(0, 3, 1, 2).to(pred.dtype)
        prob = torch.softmax(pred, dim=1)
        return losses.cross_entropy_loss(pred, labels), losses.pairwise_distance_loss(
            prob, onehot, labels > 0, num_pairs=self.num_pairs
        )

    def compute_losses(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """PAP loss ``L = sum_T lambda_T (L_T + xi_T L_pair_T)``.

        L_depth = berHu (Laina et al.), L_normals = L1, L_seg = cross-entropy (void ignored);
        L_pair = pair-wise difference loss on ``num_pairs`` random valid pixel pairs
        (segmentation: softmax probabilities against one-hot labels). With
        ``initial_loss_weight > 0`` the initial predictions are supervised likewise at the
        affinity scale. Returns ``total`` and per-term scalars (``depth``, ``depth_pair``, ...).
        """
        terms: dict[str, torch.Tensor] = {}
        total = (
            outputs[next(k for k in ("depth", "segmentation", "normals") if k in outputs)].sum()
            * 0.0
        )
        for t in self.tasks:
            lt, lp = self._task_terms(t, outputs[t], batch)
            terms[t], terms[f"{t}_pair"] = lt, lp
            total = total + self.task_weight * (lt + self.pair_weight * lp)
            if self.initial_loss_weight > 0:
                li, lpi = self._task_terms(t, outputs[f"aux_initial_{t}"], batch)
                terms[f"{t}_initial"] = li
                total = total + self.initial_loss_weight * self.task_weight * (
                    li + self.pair_weight * lpi
                )
        terms["total"] = total
        return terms

    def config(self) -> dict:
        """Constructor arguments; ``pretrained`` is left out (the weights travel in the
        state_dict, and the ImageNet file need not exist where the model is rebuilt)."""
        cfg = super().config()
        cfg.update(
            backbone=self.backbone_name,
            affinity_scale=self.affinity_scale,
            channels=self.channels,
            iterations=self.iterations,
            beta=self.beta,
            subsample=self.subsample,
            task_weight=self.task_weight,
            pair_weight=self.pair_weight,
            num_pairs=self.num_pairs,
            initial_loss_weight=self.initial_loss_weight,
        )
        return cfg
