"""Losses of the joint depth / segmentation / normal networks (plain torch); each network's
``compute_losses`` combines them as its paper states.

Conventions shared by every function (docs/architecture.md, models/base.py):

* depth tensors are (N, 1, H, W) float metres; a GT pixel is valid when it is finite and > 0
  (:func:`valid_depth_mask`). ``mask`` arguments are bool tensors of shape (N, 1, H, W) or
  (N, H, W); ``None`` means "derive from the target".
* segmentation logits are (N, C, H, W) for classes 1..C; label maps are (N, H, W) int64 with
  0 = void; the cross-entropy target is ``labels - 1`` with -1 ignored.
* normals are (N, 3, H, W) unit vectors in the camera optical frame (REP 103: x right, y down,
  z forward); an all-zero GT vector marks an invalid pixel.
* every loss returns a 0-dim tensor that stays attached to the graph even when no pixel is
  valid (it is then ``0 * pred.sum()``, so DDP sees a gradient for every parameter).

Random sampling (pair-wise losses) takes an optional ``torch.Generator`` for reproducibility.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "valid_depth_mask",
    "berhu_loss",
    "l1_loss",
    "silog_loss",
    "class_weights",
    "cross_entropy_loss",
    "normal_l1_loss",
    "normal_cosine_loss",
    "depth_to_normals",
    "depth_gradient_normal_loss",
    "pairwise_distance_loss",
    "pairwise_signed_loss",
    "ideal_affinity",
    "attention_bce_loss",
    "consistency_loss",
    "UncertaintyWeighting",
    "fixed_weighting",
]


# --------------------------------------------------------------------------- helpers
def valid_depth_mask(target: torch.Tensor) -> torch.Tensor:
    """Bool mask of valid GT depth: finite and > 0. Same shape as ``target``."""
    return torch.isfinite(target) & (target > 0)


def _zero(pred: torch.Tensor) -> torch.Tensor:
    """A zero loss attached to ``pred``'s graph (no valid pixels)."""
    return pred.sum() * 0.0


def _mask(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Broadcast ``mask`` (or the valid-depth mask of ``target``) to ``pred``'s shape."""
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    m = valid_depth_mask(target)
    if mask is not None:
        if mask.dim() == pred.dim() - 1:
            mask = mask.unsqueeze(1)
        m = m & mask.to(torch.bool).expand_as(pred)
    return m


def _normal_mask(target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(N, H, W) bool: GT normal non-zero and finite, and ``mask`` if given."""
    if target.dim() != 4 or target.shape[1] != 3:
        raise ValueError(f"normals must be (N, 3, H, W), got {tuple(target.shape)}")
    m = torch.isfinite(target).all(1) & (target.abs().sum(1) > 0)
    if mask is not None:
        if mask.dim() == 4:
            mask = mask[:, 0]
        m = m & mask.to(torch.bool)
    return m


# --------------------------------------------------------------------------- depth
def berhu_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Reverse Huber (berHu) loss, Laina et al., "Deeper Depth Prediction with FCRN", 3DV 2016.

    ``B(e) = |e|`` for ``|e| <= c`` and ``(e^2 + c^2) / (2c)`` otherwise, with
    ``c = 0.2 * max |e|`` over the valid pixels of the whole batch (treated as a constant).

    Args:
        pred, target: (N, 1, H, W) depth in metres.
        mask: optional extra bool mask (N, 1, H, W) or (N, H, W).

    Returns:
        Mean over valid pixels (0-dim tensor).
    """
    m = _mask(pred, target, mask)
    if not m.any():
        return _zero(pred)
    err = (pred[m] - target[m]).abs()
    c = (0.2 * err.max()).detach().clamp_min(1e-6)
    loss = torch.where(err <= c, err, (err * err + c * c) / (2 * c))
    return loss.mean()


def l1_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean absolute error over valid pixels. Shapes as :func:`berhu_loss`."""
    m = _mask(pred, target, mask)
    if not m.any():
        return _zero(pred)
    return (pred[m] - target[m]).abs().mean()


def silog_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, lam: float = 0.5
) -> torch.Tensor:
    """Scale-invariant log loss, Eigen et al., "Depth Map Prediction from a Single Image using a
    Multi-Scale Deep Network", NIPS 2014, eq. 4.

    Per image with ``d_i = log pred_i - log gt_i`` over its n valid pixels:
    ``L = (1/n) sum d_i^2 - lam / n^2 (sum d_i)^2``; the batch loss is the mean over images
    that have valid pixels. ``lam = 0.5`` is the paper's training value (1 = fully scale
    invariant, 0 = plain log L2).

    Args:
        pred, target: (N, 1, H, W) metres; ``pred`` must be > 0 (it is clamped at 1e-6).
        mask: optional bool mask.
    """
    m = _mask(pred, target, mask)
    n = m.flatten(1).sum(1)
    if not (n > 0).any():
        return _zero(pred)
    safe_t = torch.where(m, target, torch.ones_like(target))
    d = torch.where(m, torch.log(pred.clamp_min(1e-6)) - torch.log(safe_t), torch.zeros_like(pred))
    d = d.flatten(1)
    nn_ = n.clamp_min(1).to(d.dtype)
    per_image = (d * d).sum(1) / nn_ - lam * (d.sum(1) / nn_) ** 2
    return per_image[n > 0].mean()


# --------------------------------------------------------------------------- segmentation
def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Frequency-balancing weights ``w_c = (N_total - N_c) / N_total`` (CI-Net).

    Args:
        labels: int tensor of any shape, 0 = void (not counted), 1..num_classes.
        num_classes: C.

    Returns:
        (C,) float32 weights for classes 1..C (index 0 of the result is class 1). With no
        non-void pixel all weights are 1.
    """
    lab = labels.reshape(-1).long()
    lab = lab[(lab > 0) & (lab <= num_classes)]
    if lab.numel() == 0:
        return torch.ones(num_classes, dtype=torch.float32, device=labels.device)
    counts = torch.bincount(lab - 1, minlength=num_classes).float()
    total = counts.sum()
    return (total - counts) / total


def cross_entropy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Pixel-wise cross-entropy with void ignored.

    Args:
        logits: (N, C, H, W) scores for classes 1..C.
        labels: (N, H, W) int, 0 = void (ignored), 1..C. Labels > C raise.
        weights: optional (C,) class weights (see :func:`class_weights`).
        reduction: ``"mean"`` (weighted mean over non-void pixels, torch semantics) or
            ``"sum"`` (MS-CNN's summed CE, used with a small lambda such as 1e-6).

    Raises:
        ValueError: shape mismatch, unknown reduction or labels out of range.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if logits.dim() != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"logits (N, C, H, W) {tuple(logits.shape)} and labels (N, H, W) "
            f"{tuple(labels.shape)} do not match"
        )
    target = labels.long() - 1
    if target.numel() and int(target.max()) >= logits.shape[1]:
        raise ValueError(f"label {int(target.max()) + 1} exceeds the {logits.shape[1]} classes")
    if not (target >= 0).any():
        return _zero(logits)
    w = None if weights is None else weights.to(logits.dtype)
    return F.cross_entropy(logits, target, weight=w, ignore_index=-1, reduction=reduction)


# --------------------------------------------------------------------------- normals
def normal_l1_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """L1 between normal vectors: mean over valid pixels of ``sum_k |n_k - n*_k|``.

    Args:
        pred, target: (N, 3, H, W) unit normals; a zero GT vector is invalid.
        mask: optional bool (N, H, W) or (N, 1, H, W).
    """
    m = _normal_mask(target, mask)
    if not m.any():
        return _zero(pred)
    return (pred - target).abs().sum(1)[m].mean()


def normal_cosine_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``mean(1 - cos(n, n*))`` over valid pixels (0 for identical, 2 for opposite normals)."""
    m = _normal_mask(target, mask)
    if not m.any():
        return _zero(pred)
    cos = F.cosine_similarity(pred, target, dim=1, eps=1e-8)
    return (1.0 - cos)[m].mean()


def depth_to_normals(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Surface normals from a depth map by back-projection and a cross product.

    ``P(u, v) = z K^-1 [u, v, 1]^T``; tangents by central differences
    ``P_u = P(u+1, v) - P(u-1, v)``, ``P_v = P(u, v+1) - P(u, v-1)``; ``n = P_v x P_u``
    normalised and oriented towards the camera (``n . P < 0``), REP 103 optical frame. A plane
    facing the camera gives (0, 0, -1). Border pixels copy their inner neighbour.

    Args:
        depth: (N, 1, H, W) metres, <= 0 or non-finite = invalid.
        K: (N, 3, 3) or (3, 3) intrinsics at this resolution.

    Returns:
        (N, 3, H, W) unit normals; zero vectors where the pixel or a neighbour is invalid.
    """
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth must be (N, 1, H, W), got {tuple(depth.shape)}")
    n, _, h, w = depth.shape
    if h < 3 or w < 3:
        raise ValueError(f"depth_to_normals needs at least 3x3 pixels, got {h}x{w}")
    K = K.to(depth.dtype)
    if K.dim() == 2:
        K = K.expand(n, 3, 3)
    valid = valid_depth_mask(depth)
    z = torch.where(valid, depth, torch.zeros_like(depth))
    v, u = torch.meshgrid(
        torch.arange(h, dtype=depth.dtype, device=depth.device),
        torch.arange(w, dtype=depth.dtype, device=depth.device),
        indexing="ij",
    )
    fx, fy = K[:, 0, 0].view(n, 1, 1, 1), K[:, 1, 1].view(n, 1, 1, 1)
    cx, cy = K[:, 0, 2].view(n, 1, 1, 1), K[:, 1, 2].view(n, 1, 1, 1)
    pts = torch.cat([(u - cx) / fx * z, (v - cy) / fy * z, z], dim=1)  # (N, 3, H, W)
    pu = F.pad(pts[..., :, 2:] - pts[..., :, :-2], (1, 1, 0, 0), mode="replicate")
    pv = F.pad(pts[..., 2:, :] - pts[..., :-2, :], (0, 0, 1, 1), mode="replicate")
    nrm = torch.cross(pv, pu, dim=1)
    nrm = nrm * torch.where((nrm * pts).sum(1, keepdim=True) > 0, -1.0, 1.0)
    nrm = F.normalize(nrm, dim=1, eps=1e-12)
    vf = valid.to(depth.dtype)
    ok = vf * F.pad(vf[..., :, 2:] * vf[..., :, :-2], (1, 1, 0, 0), mode="replicate")
    ok = ok * F.pad(vf[..., 2:, :] * vf[..., :-2, :], (0, 0, 1, 1), mode="replicate")
    return nrm * ok


def _gradient_normals(depth: torch.Tensor) -> torch.Tensor:
    """Hu et al. normals ``(-dz/dx, -dz/dy, 1)`` (unnormalised) by central differences."""
    dx = F.pad((depth[..., :, 2:] - depth[..., :, :-2]) * 0.5, (1, 1, 0, 0), mode="replicate")
    dy = F.pad((depth[..., 2:, :] - depth[..., :-2, :]) * 0.5, (0, 0, 1, 1), mode="replicate")
    return torch.cat([-dx, -dy, torch.ones_like(depth)], dim=1)


def depth_gradient_normal_loss(
    pred_depth: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Depth-gradient normal loss, Hu et al., "Revisiting Single Image Depth Estimation",
    WACV 2019 (used by CI-Net as L_norm).

    ``n = (-dz/dx, -dz/dy, 1)`` from central differences of each depth map (pixel units);
    ``L = mean(1 - cos(n_pred, n_gt))`` over pixels whose GT and both GT neighbours in x and y
    are valid.

    Args:
        pred_depth, gt_depth: (N, 1, H, W) metres, H, W >= 3.
        mask: optional bool mask.
    """
    m = _mask(pred_depth, gt_depth, mask).to(pred_depth.dtype)
    ok = m * F.pad(m[..., :, 2:] * m[..., :, :-2], (1, 1, 0, 0), mode="replicate")
    ok = (ok * F.pad(m[..., 2:, :] * m[..., :-2, :], (0, 0, 1, 1), mode="replicate"))[:, 0] > 0
    if not ok.any():
        return _zero(pred_depth)
    gt = torch.where(m > 0, gt_depth, torch.zeros_like(gt_depth))
    cos = F.cosine_similarity(_gradient_normals(pred_depth), _gradient_normals(gt), dim=1)
    return (1.0 - cos)[ok].mean()


# --------------------------------------------------------------------------- pair-wise
def _sample_valid(
    mask: torch.Tensor, k: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``k`` flat indices per image among valid pixels (with replacement).

    Returns (indices (N, k) int64, has_valid (N,) bool).
    """
    flat = mask.flatten(1).to(torch.float32)
    has = flat.sum(1) > 0
    probs = torch.where(has[:, None], flat, torch.ones_like(flat))
    idx = torch.multinomial(probs, k, replacement=True, generator=generator)
    return idx, has


def _pair_inputs(pred, target, mask):
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(
            f"pred/target must be equal (N, C, H, W), got {tuple(pred.shape)}, {tuple(target.shape)}"
        )
    if mask is None:
        mask = (
            valid_depth_mask(target).all(1) if pred.shape[1] == 1 else torch.isfinite(target).all(1)
        )
    elif mask.dim() == 4:
        mask = mask[:, 0]
    return pred.flatten(2), target.flatten(2), mask.to(torch.bool)


def pairwise_distance_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    num_pairs: int = 300,
    generator: torch.Generator | None = None,
    pairs: torch.Tensor | None = None,
) -> torch.Tensor:
    """PAP pair-wise loss, Zhang et al., "Pattern-Affinitive Propagation across Depth, Surface
    Normal and Semantic Segmentation", CVPR 2019, section 3.5:

    ``L_pair = sum_{(i, j) in S} | ||p_i - p_j|| - ||g_i - g_j|| |``

    over a set S of ``num_pairs`` random pairs of valid pixels of one image: the predicted
    *distance* of a pair is compared with the ground-truth distance (absolute values, so a
    map whose ordering is reversed but whose pair distances are right costs nothing), and the
    pair terms are **summed**, as the paper writes it (not averaged: with ``xi = 0.2`` on the
    sum, a per-pair mean would divide the effective weight by ``num_pairs``). ``||.||`` is the
    absolute value for depth (C = 1) and the Euclidean norm over channels for vector maps
    (normals, C = 3; segmentation probabilities against one-hot labels, C = classes). The
    batch loss is the mean of the per-image sums over the images that have a valid pixel.

    Args:
        pred, target: (N, C, H, W), same shape (depth in metres, unit normals, ...).
        mask: bool (N, H, W) or (N, 1, H, W) of pixels pairs may use; default valid depth
            (C = 1: finite and > 0) or a finite target.
        num_pairs: |S| per image (paper: 300). Pixels are drawn uniformly among the valid
            ones, with replacement.
        generator: optional torch.Generator for the sampling.
        pairs: optional explicit (N, K, 2) int64 flat pixel indices (row-major over H x W)
            instead of sampling (for tests and reproducible evaluations); ``mask`` is then
            not used.

    Returns:
        0-dim tensor: mean over images of the per-image sum over pairs.
    """
    p, g, m = _pair_inputs(pred, target, mask)
    if pairs is None:
        idx, has = _sample_valid(m, 2 * num_pairs, generator)
        i, j = idx[:, :num_pairs], idx[:, num_pairs:]
    else:
        if pairs.dim() != 3 or pairs.shape[0] != p.shape[0] or pairs.shape[2] != 2:
            raise ValueError(f"pairs must be (N, K, 2), got {tuple(pairs.shape)}")
        i, j = pairs[..., 0].long(), pairs[..., 1].long()
        has = torch.ones(p.shape[0], dtype=torch.bool, device=p.device)
    if not has.any():
        return _zero(pred)
    c = p.shape[1]
    pi, pj = p.gather(2, i[:, None].expand(-1, c, -1)), p.gather(2, j[:, None].expand(-1, c, -1))
    gi, gj = g.gather(2, i[:, None].expand(-1, c, -1)), g.gather(2, j[:, None].expand(-1, c, -1))
    if c == 1:
        dp, dg = (pi - pj).abs()[:, 0], (gi - gj).abs()[:, 0]
    else:  # Euclidean distance; 0 (with a zero gradient) for coincident vectors
        sq = (pi - pj).pow(2).sum(1)
        dp = torch.where(sq > 0, sq.clamp_min(1e-24).sqrt(), torch.zeros_like(sq))
        dg = (gi - gj).pow(2).sum(1).sqrt()
    per_image = (dp - dg).abs().sum(1)  # (N,)
    return per_image[has].mean()


def pairwise_signed_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    num_pixels: int = 500,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """CI-Net pair-wise loss on signed differences (Gao et al., "CI-Net: a joint depth
    estimation and semantic segmentation network using contextual information", 2022).

    ``num_pixels`` valid pixels are sampled per image; over *all* ordered pairs among them the
    signed difference matrices ``D^p_ij = p_i - p_j`` and ``D^g_ij = g_i - g_j`` are compared:
    ``L = mean_ij |D^p_ij - D^g_ij|`` (averaged over channels). The sign keeps the depth
    ordering of the pair, unlike an |d_i - d_j| magnitude term.

    Args:
        pred, target: (N, C, H, W).
        mask: bool (N, H, W) or (N, 1, H, W); default as :func:`pairwise_distance_loss`.
        num_pixels: pixels per image (paper: 500; memory N * C * num_pixels^2).
    """
    p, g, m = _pair_inputs(pred, target, mask)
    idx, has = _sample_valid(m, num_pixels, generator)
    if not has.any():
        return _zero(pred)
    idx = idx[:, None, :].expand(-1, p.shape[1], -1)
    ps, gs = p.gather(2, idx), g.gather(2, idx)
    dp = ps[..., :, None] - ps[..., None, :]
    dg = gs[..., :, None] - gs[..., None, :]
    return (dp - dg).abs()[has].mean()


# --------------------------------------------------------------------------- attention (CI-Net)
def ideal_affinity(labels_onehot_down: torch.Tensor) -> torch.Tensor:
    """Ideal affinity map ``A = M M^T`` (CI-Net scene-understanding module target).

    Args:
        labels_onehot_down: (N, C, h, w) one-hot labels at the feature size (void = all-zero).

    Returns:
        (N, h*w, h*w) with A_ij = 1 where pixels i and j share a class, 0 otherwise.
    """
    if labels_onehot_down.dim() != 4:
        raise ValueError(
            f"expected (N, C, h, w) one-hot labels, got {tuple(labels_onehot_down.shape)}"
        )
    m = labels_onehot_down.flatten(2).transpose(1, 2)  # (N, hw, C)
    return m @ m.transpose(1, 2)


def downsample_labels(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of (N, H, W) int labels to ``size`` = (h, w)."""
    out = F.interpolate(labels[:, None].float(), size=tuple(size), mode="nearest")
    return out[:, 0].long()


def attention_bce_loss(
    attention: torch.Tensor,
    labels: torch.Tensor,
    size: Sequence[int],
    from_logits: bool = False,
) -> torch.Tensor:
    """BCE between a predicted attention map and the ideal affinity of the labels (CI-Net).

    Labels are resized (nearest) to ``size``, one-hot encoded over classes 1..C and
    ``A = M M^T`` is the target (:func:`ideal_affinity`); pairs with a void pixel are ignored.

    Args:
        attention: (N, h*w, h*w) probabilities in [0, 1] (``sigmoid(Q^T K)``), or logits with
            ``from_logits=True`` (numerically safer).
        labels: (N, H, W) int, 0 = void.
        size: (h, w) of the attention's feature map.

    Raises:
        ValueError: attention shape does not match ``size``.
    """
    h, w = int(size[0]), int(size[1])
    if attention.shape[-2:] != (h * w, h * w):
        raise ValueError(f"attention {tuple(attention.shape)} does not match size {h}x{w}")
    lab = downsample_labels(labels, (h, w)).flatten(1)  # (N, hw)
    num_classes = max(int(lab.max()), 1) if lab.numel() else 1
    onehot = F.one_hot(lab, num_classes + 1)[..., 1:].to(attention.dtype)  # void -> zeros
    target = onehot @ onehot.transpose(1, 2)
    valid = (lab > 0)[:, :, None] & (lab > 0)[:, None, :]
    if not valid.any():
        return _zero(attention)
    if from_logits:
        loss = F.binary_cross_entropy_with_logits(attention, target, reduction="none")
    else:
        loss = F.binary_cross_entropy(attention.clamp(1e-6, 1 - 1e-6), target, reduction="none")
    return loss[valid].mean()


def consistency_loss(
    features: Sequence[torch.Tensor],
    labels: torch.Tensor,
    offsets: Sequence[int] = (1, 2),
    log_sigma: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """CI-Net cross-task consistency loss L_con (Gao et al., "CI-Net: a joint depth estimation
    and semantic segmentation network using contextual information", Applied Intelligence
    2022, Eq. 7) on decoder features, with the ground-truth labels choosing the pairs.

    For a feature map f, an offset l and an image axis (x or y), every pixel i and its
    neighbour j = i + l along that axis form a pair with the Gaussian feature similarity

    ``D_ij(f, l) = exp(-1/2 (f_i - f_j)^T (sigma^2 I)^-1 (f_i - f_j))
                = exp(-||f_i - f_j||^2 / (2 sigma^2))``

    and ``psi_ij = 1`` when the ground-truth labels of i and j differ, 0 when they agree:
    features of neighbours on different semantic regions are pushed apart.
    ``L_con = sum_f [sum_{l, axis, (i, j)} psi_ij D_ij(f, l) / P]`` with ``l`` in ``offsets``
    (paper: 1 and 2), both axes, ``f`` in ``features`` (CI-Net: the depth and the semantic
    decoder features) and ``sigma`` learned. ``P`` = the number of pairs with two non-void
    labels (pairs touching a void pixel have no psi and are skipped); dividing the paper's sum
    by ``P`` keeps the weight 5 of ``L_con`` independent of the image size (documented
    departure, docs/models/cinet.md).

    Note: only psi = 1 pairs contribute, so the loss is minimised by pushing features apart
    *or* by shrinking sigma; a learned sigma therefore only decreases under this loss.

    Args:
        features: sequence of (N, C_f, H, W) feature maps (CI-Net: at the input resolution).
        labels: (N, H', W') int ground truth, 0 = void; resized (nearest) to each feature map.
        offsets: neighbour distances in pixels (positive).
        log_sigma: learnable 0-dim tensor log(sigma), or a float; None = 0 (sigma = 1).

    Returns:
        0-dim tensor (attached zero when no non-void pair exists).

    Raises:
        ValueError: a non-positive offset, or batch sizes that differ.
    """
    if not features:
        raise ValueError("consistency_loss needs at least one feature map")
    if any(off <= 0 for off in offsets):
        raise ValueError(f"offsets must be positive, got {list(offsets)}")
    ref = features[0]
    if log_sigma is None:
        log_sigma = 0.0
    if not torch.is_tensor(log_sigma):
        log_sigma = torch.tensor(float(log_sigma), dtype=ref.dtype, device=ref.device)
    inv_two_var = 0.5 * torch.exp(-2.0 * log_sigma)
    total = ref.sum() * 0.0
    for f in features:
        if f.dim() != 4 or f.shape[0] != labels.shape[0]:
            raise ValueError(
                f"features must be (N, C, H, W) with N = {labels.shape[0]}, got {tuple(f.shape)}"
            )
        lab = labels.long()
        if tuple(lab.shape[-2:]) != tuple(f.shape[-2:]):
            lab = downsample_labels(lab, f.shape[-2:])
        term, count = f.sum() * 0.0, 0
        for off in offsets:
            for dim in (2, 3):
                n = f.shape[dim]
                if off >= n:
                    continue
                fa, fb = f.narrow(dim, off, n - off), f.narrow(dim, 0, n - off)
                la, lb = lab.narrow(dim - 1, off, n - off), lab.narrow(dim - 1, 0, n - off)
                valid = (la > 0) & (lb > 0)
                psi = (valid & (la != lb)).to(f.dtype)
                d = torch.exp(-(fa - fb).pow(2).sum(1) * inv_two_var)
                term = term + (psi * d).sum()
                count += int(valid.sum())
        total = total + (term / count if count else term)
    return total


# --------------------------------------------------------------------------- weighting
class UncertaintyWeighting(nn.Module):
    """Homoscedastic-uncertainty task weighting, Kendall, Gal & Cipolla, CVPR 2018.

    With learned ``s_t = log sigma_t^2`` (initialised to 0):
    ``L = sum_t exp(-s_t) L_t + s_t`` (the common simplified form of eq. 7; the 1/2 factors
    of the regression case are absorbed into ``s_t``).

    Args:
        n_tasks: number of task losses.
    """

    def __init__(self, n_tasks: int):
        super().__init__()
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
        self.log_vars = nn.Parameter(torch.zeros(int(n_tasks)))

    def forward(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        """Weighted sum of ``losses`` (a sequence of n_tasks 0-dim tensors)."""
        if len(losses) != self.log_vars.numel():
            raise ValueError(f"expected {self.log_vars.numel()} losses, got {len(losses)}")
        stacked = torch.stack([torch.as_tensor(v) for v in losses])
        return (torch.exp(-self.log_vars) * stacked + self.log_vars).sum()


def fixed_weighting(
    losses: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> torch.Tensor:
    """``sum_k weights[k] * losses[k]``; a loss without a weight gets weight 1.

    Raises:
        ValueError: a weight names a loss that is not present, or ``losses`` is empty.
    """
    if not losses:
        raise ValueError("fixed_weighting needs at least one loss")
    unknown = set(weights) - set(losses)
    if unknown:
        raise ValueError(f"weights for unknown losses {sorted(unknown)}; have {sorted(losses)}")
    return sum(float(weights.get(k, 1.0)) * v for k, v in losses.items())
