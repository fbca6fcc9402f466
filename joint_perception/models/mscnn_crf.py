"""Multi-scale joint CNN with a dense CRF (Mousavian, Pirsiavash, Kosecka, 3DV 2016).

Build with ``build_model("mscnn_crf")``; the architecture as built, its parameter count and
every departure from the paper are in ``docs/models/mscnn_crf.md``.

Data flow for an (N, 3, H, W) normalised RGB input:

1. Trunk: DeepLab-LargeFOV VGG-16 (torchvision names, pool4 stride 1, conv5 dilation 2),
   then pool5 (3x3, stride 1), fc6 (3x3, dilation 12, 1024) and fc7 (1x1, 1024): output
   stride 8, grid (h, w) = (H/8, W/8).
2. Five branches (DeepLab-MSc): pool1 (/2), pool2 (/4), pool3 (/8), pool4 (/8) each through a
   two-layer MLP (3x3 conv 128 with stride 4/2/1/1 to reach /8, then 1x1 conv 128), and fc7.
   Every branch ends in a segmentation conv (C channels) and a depth conv (50 bin channels)
   (+ a normals conv (3) with the normals head); the branch outputs are summed on the /8 grid.
3. Depth as soft classification: ``d = sum_b b * l * softmax_b(z)``, ``b = 1..B``, ``B = 50``,
   ``l = max_depth / B = 0.14 m`` (:func:`soft_bin_depth`), on the /8 grid, then bilinear x8.
4. Dense CRF over the segmentation (:class:`~joint_perception.models.crf.ConvCRF`) on the /8
   grid with features position (input pixels), RGB (0..255, bilinearly resized) and the
   predicted depth (metres, detached), mean-field as in CRF-as-RNN; logits bilinear x8.

Losses: ``L = lambda * L_sem + L_depth`` with summed cross-entropy and ``lambda = 1e-6``
(balances a sum over ~3e5 pixels of a 480x640 image against a per-pixel-mean depth loss),
``L_depth`` the paper's Eq. 4, the fully scale-invariant log loss
``1/n sum d_i^2 - 1/n^2 (sum d_i)^2`` (lambda_si = 1), with ground truth beyond the last bin
clipped to it (``max_depth``), as the bins' classification targets are.

Three-stage training (``set_stage``): 1 = segmentation only (no CRF), 2 = + depth (no CRF),
3 = + CRF (end to end); 0 = the default = stage 3.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from joint_perception.models import losses
from joint_perception.models.backbones import build_backbone
from joint_perception.models.base import JointModel
from joint_perception.models.blocks import upsample_to
from joint_perception.models.crf import DEFAULT_THETA, DEFAULT_WEIGHTS, ConvCRF
from joint_perception.models.registry import register_model

# indices of pool1..pool4 in torchvision's VGG-16 ``features``, their strides, channels
_POOL_TAPS = (4, 9, 16, 23)
_POOL_STRIDES = (2, 4, 8, 8)
_POOL_CHANNELS = (64, 128, 256, 512)
_CONV5_3_RELU = 29
OUTPUT_STRIDE = 8


def soft_bin_depth(logits: torch.Tensor, bin_size: float) -> torch.Tensor:
    """Depth as the expectation over depth bins: ``d = sum_b b * l * softmax_b(logits)``.

    Bin ``b`` (1..B) stands for ``b * l`` metres (the upper edge of the interval
    ``((b - 1) l, b l]``, the paper's formula), so ``d`` lies in ``[l, B l]``.

    Args:
        logits: (N, B, H, W) bin scores.
        bin_size: ``l`` in metres (0.14 in the paper).

    Returns:
        (N, 1, H, W) depth in metres.
    """
    b = logits.shape[1]
    centres = torch.arange(1, b + 1, dtype=logits.dtype, device=logits.device) * float(bin_size)
    prob = torch.softmax(logits, dim=1)
    return (prob * centres.view(1, b, 1, 1)).sum(dim=1, keepdim=True)


class _Heads(nn.Module):
    """One branch's prediction convs (1x1): segmentation, depth bins, optional normals."""

    def __init__(self, in_ch: int, num_classes: int, num_bins: int, normals: bool):
        super().__init__()
        self.seg = nn.Conv2d(in_ch, num_classes, 1)
        self.depth = nn.Conv2d(in_ch, num_bins, 1)
        self.normals = nn.Conv2d(in_ch, 3, 1) if normals else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = [self.seg(x), self.depth(x)]
        if self.normals is not None:
            out.append(self.normals(x))
        return out


@register_model("mscnn_crf")
class MultiScaleCRFNet(JointModel):
    """Multi-scale joint CNN + dense CRF (depth + segmentation, optional normals).

    Args:
        tasks: ``("depth", "segmentation")`` (the paper) optionally plus ``"normals"``.
        num_classes: C.
        max_depth: metres, upper end of the bins (paper: 7.0 = 50 x 0.14 m).
        num_bins: B depth bins (paper: 50); ``bin_size = max_depth / num_bins``.
        segmentation_weight: lambda on the summed cross-entropy (paper: 1e-6).
        silog_lambda: lambda of the scale-invariant log loss (paper Eq. 4: 1, fully scale
            invariant; Eigen et al.'s training value 0.5 also constrains the global scale).
        dropout: after fc6, fc7 and the branch MLPs (DeepLab: 0.5).
        crf_window: ConvCRF neighbourhood on the /8 grid (odd).
        crf_iterations: mean-field iterations (CRF-as-RNN: 5).
        crf_theta: (theta_a px, theta_b RGB, theta_g px, theta_z m, theta_t px), input pixels.
        crf_weights: initial Potts weights (w1, w2, w3).
        crf_normalization: ``"symmetric"`` (default, kernels normalised as in the dense CRF
            code) or ``"none"`` (raw kernel sums; see ``models.crf``).
        pretrained: optional path to an ImageNet VGG-16 state_dict (torchvision names).
        pretrained_key_map: key mapping for a ``pretrained`` file in another naming
            (``models.backbones.PRETRAINED_KEY_MAPS``); the file is loaded strictly.

    Outputs of ``forward``: ``depth`` (N, 1, H, W) metres in [l, max_depth], ``segmentation``
    (N, C, H, W) logits (CRF output in stages 0 and 3), ``normals`` (N, 3, H, W) unit with the
    head, ``aux_depth_logits`` (N, B, h, w) and ``aux_seg_unary`` (N, C, h, w) on the /8 grid.

    Raises:
        ValueError: unsupported tasks or arguments.
    """

    def __init__(
        self,
        tasks: Iterable[str] = ("depth", "segmentation"),
        num_classes: int = 40,
        max_depth: float = 7.0,
        num_bins: int = 50,
        segmentation_weight: float = 1e-6,
        silog_lambda: float = 1.0,
        dropout: float = 0.5,
        crf_window: int = 11,
        crf_iterations: int = 5,
        crf_theta: Sequence[float] = DEFAULT_THETA,
        crf_weights: Sequence[float] = DEFAULT_WEIGHTS,
        crf_normalization: str = "symmetric",
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
                f"mscnn_crf needs tasks depth and segmentation (+ optional normals), got {self.tasks}"
            )
        if num_bins < 2 or max_depth <= 0:
            raise ValueError(f"need num_bins >= 2 and max_depth > 0, got {num_bins}, {max_depth}")
        self.num_bins = int(num_bins)
        self.bin_size = self.max_depth / self.num_bins
        self.segmentation_weight = float(segmentation_weight)
        self.silog_lambda = float(silog_lambda)
        self.dropout = float(dropout)
        normals = "normals" in self.tasks

        self.trunk = build_backbone(
            "vgg16", pretrained=pretrained, pretrained_key_map=pretrained_key_map, dilated=True
        )
        self.pool5 = nn.MaxPool2d(3, stride=1, padding=1)
        self.fc6 = nn.Conv2d(512, 1024, 3, padding=12, dilation=12)
        self.fc7 = nn.Conv2d(1024, 1024, 1)
        self.drop = nn.Dropout2d(self.dropout)
        self.mlps = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(ch, 128, 3, stride=OUTPUT_STRIDE // s, padding=1),
                nn.ReLU(inplace=True),
                nn.Dropout2d(self.dropout),
                nn.Conv2d(128, 128, 1),
                nn.ReLU(inplace=True),
                nn.Dropout2d(self.dropout),
            )
            for ch, s in zip(_POOL_CHANNELS, _POOL_STRIDES, strict=True)
        )
        self.heads = nn.ModuleList(
            [_Heads(128, num_classes, self.num_bins, normals) for _ in _POOL_TAPS]
            + [_Heads(1024, num_classes, self.num_bins, normals)]
        )
        self.crf = ConvCRF(
            num_classes,
            window=crf_window,
            iterations=crf_iterations,
            theta=crf_theta,
            weights=crf_weights,
            normalization=crf_normalization,
        )
        self._crf_weights = tuple(float(w) for w in crf_weights)

    # ------------------------------------------------------------------ stages
    @property
    def num_stages(self) -> int:
        """3 (``set_stage``): 1 = segmentation, 2 = + depth, 3 = + CRF (end to end); 0 = all
        (as 3)."""
        return 3

    @property
    def crf_active(self) -> bool:
        """Whether ``forward`` runs the CRF (stages 0 and 3)."""
        return self.stage in (0, 3)

    # ------------------------------------------------------------------ forward
    def _taps(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """pool1..pool4 outputs and conv5_3 (after ReLU) of the dilated VGG-16."""
        pools = []
        for i, layer in enumerate(self.trunk.features[: _CONV5_3_RELU + 1]):
            x = layer(x)
            if i in _POOL_TAPS:
                pools.append(x)
        return pools, x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h_in, w_in = int(x.shape[-2]), int(x.shape[-1])
        pools, conv5 = self._taps(x)
        fc7 = self.drop(F.relu(self.fc7(self.drop(F.relu(self.fc6(self.pool5(conv5)))))))
        grid = (int(fc7.shape[-2]), int(fc7.shape[-1]))
        feats = [mlp(p) for mlp, p in zip(self.mlps, pools, strict=True)] + [fc7]
        sums: list[torch.Tensor] | None = None
        for head, f in zip(self.heads, feats, strict=True):
            outs = [upsample_to(o, grid) for o in head(f)]
            sums = outs if sums is None else [a + b for a, b in zip(sums, outs, strict=True)]
        seg_unary, depth_logits = sums[0], sums[1]

        depth_grid = soft_bin_depth(depth_logits, self.bin_size)
        out = {
            "depth": upsample_to(depth_grid, (h_in, w_in)),
            "aux_depth_logits": depth_logits,
            "aux_seg_unary": seg_unary,
        }
        seg = seg_unary
        if self.crf_active:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            rgb = upsample_to((x * std + mean) * 255.0, grid)
            spacing = w_in / grid[1]
            seg = self.crf(seg_unary, rgb, depth_grid.detach(), pixel_spacing=spacing)
        out["segmentation"] = upsample_to(seg, (h_in, w_in))
        if len(sums) > 2:
            out["normals"] = F.normalize(upsample_to(sums[2], (h_in, w_in)), dim=1, eps=1e-6)
        return out

    # ------------------------------------------------------------------ losses
    def compute_losses(self, outputs, batch):
        """``total = segmentation_weight * CE_sum + [stage >= 2] * SILog (+ normals cosine)``.

        SILog is Eq. 4 with ``silog_lambda`` (1 by default); valid depth targets beyond
        ``max_depth`` are clipped to ``max_depth`` (the last bin), as the paper's bin targets
        are. Returns ``total``, ``segmentation`` (summed CE), ``depth`` (SI log loss),
        ``normals``.
        """
        labels = batch["labels"]
        if "has_labels" in batch:
            labels = labels * batch["has_labels"].view(-1, 1, 1).to(labels.dtype)
        l_seg = losses.cross_entropy_loss(outputs["segmentation"], labels, reduction="sum")
        gt = batch["depth"]
        gt = torch.where(losses.valid_depth_mask(gt), gt.clamp(max=self.max_depth), gt)
        l_depth = losses.silog_loss(outputs["depth"], gt, lam=self.silog_lambda)
        terms = {"segmentation": l_seg, "depth": l_depth}
        total = self.segmentation_weight * l_seg
        if self.stage != 1:
            total = total + l_depth
        if "normals" in self.tasks:
            nt = batch["normals"]
            if "has_normals" in batch:
                nt = nt * batch["has_normals"].view(-1, 1, 1, 1).to(nt.dtype)
            terms["normals"] = losses.normal_cosine_loss(outputs["normals"], nt)
            if self.stage != 1:
                total = total + terms["normals"]
        terms["total"] = total
        return terms

    def config(self) -> dict:
        """Constructor arguments; ``pretrained`` is left out (the weights travel in the
        state_dict, and the ImageNet file need not exist where the model is rebuilt)."""
        cfg = super().config()
        cfg.update(
            num_bins=self.num_bins,
            segmentation_weight=self.segmentation_weight,
            silog_lambda=self.silog_lambda,
            dropout=self.dropout,
            crf_window=self.crf.window,
            crf_iterations=self.crf.iterations,
            crf_theta=list(self.crf.theta),
            crf_weights=list(self._crf_weights),
            crf_normalization=self.crf.normalization,
        )
        return cfg
