"""Dense CRF over segmentation with position, RGB and depth kernels; mean-field as in CRF-as-RNN.

The model (Krähenbühl & Koltun, NIPS 2011; with the depth kernel of Mousavian et al., 3DV 2016):

    E(x) = sum_i psi_u(x_i) + sum_{i<j} sum_m mu_m(x_i, x_j) k_m(f_i, f_j)

    k_1 = exp(-|p_i - p_j|^2 / 2 theta_a^2 - |I_i - I_j|^2 / 2 theta_b^2)   appearance
    k_2 = exp(-|p_i - p_j|^2 / 2 theta_g^2 - |d_i - d_j|^2 / 2 theta_z^2)   depth
    k_3 = exp(-|p_i - p_j|^2 / 2 theta_t^2)                                 smoothness

Units of the features: ``p`` pixels of the *network input image* (a CRF grid coarser than the
input, ``pixel_spacing`` > 1, scales grid indices by the spacing so theta keeps its meaning),
``I`` RGB in 0..255, ``d`` metres. ``theta = (theta_a, theta_b, theta_g, theta_z, theta_t)``,
default ``(160, 3, 50, 0.2, 3)``. The unary energy is ``psi_u = -logits``.

``mu_m`` are learned C x C compatibility matrices (penalties, energy units), initialised to the
Potts model ``w_m (1 - I)`` with ``w = (7, 4, 3)``. CRF-as-RNN (Zheng et al., ICCV 2015) writes
the same update with a *reward* ``w_m I`` for equal labels; the two differ by a per-pixel constant
(``sum_l' (K Q)_i(l')`` does not depend on ``l``) that softmax cancels, so they give identical
mean-field iterates.

Mean-field (parallel updates, as in CRF-as-RNN), with ``Q_0 = softmax(logits)``:

    out_t = logits - sum_m mu_m (K_m Q_{t-1})        (K_m Q)_i = sum_{j != i} k_m(f_i, f_j) Q_j
    Q_t   = softmax(out_t)

The returned tensor is ``out_T`` (CRF logits; ``softmax`` gives the marginals), so the usual
cross-entropy trains the CRF (and everything under it) end to end.

Kernel normalisation (``normalization="symmetric"``, the default, as the default of the dense
CRF code of Krähenbühl & Koltun): each kernel is used as
``k~(i, j) = k(i, j) / sqrt(Z_i Z_j)`` with ``Z_i = 1 + sum_{j != i} k(i, j)`` (its mass over
the neighbourhood, the pixel itself counted once). The message ``(K~ Q)_i`` is then at most
about 1 per label whatever the bandwidths, window or grid spacing, so the Potts weights keep
their meaning (an energy of up to ``w_m`` per pixel) instead of being multiplied by the kernel
mass (about 65 for the depth kernel on the /8 grid with an 11 x 11 window, which made the CRF
at the initial weights far overconfident). ``k~`` is symmetric, so ``E`` stays an energy and
mean-field still lowers it. ``"none"`` uses the raw kernels.

Two message-passing implementations share this update:

* :class:`ConvCRF` (Teichmann & Cipolla, 2018): the pairwise sum is truncated to a ``window`` x
  ``window`` neighbourhood, gathered by a grouped convolution with one-hot filters. Only Conv,
  Mul, Sub, Exp, ReduceSum, Softmax, Reshape: exports to ONNX opset 17 and builds in TensorRT,
  with static shapes.
* :func:`exact_dense_crf_meanfield`: the exact fully connected sum over all N^2 pixel pairs
  (memory O(N^2); for small images and tests). With a window of ``2 max(H, W) - 1`` the
  ConvCRF covers every pair and equals this reference.

:func:`crf_energy` evaluates ``E`` exactly (dense, optionally restricted to the window).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_THETA = (160.0, 3.0, 50.0, 0.2, 3.0)
DEFAULT_WEIGHTS = (7.0, 4.0, 3.0)
NUM_KERNELS = 3
NORMALIZATIONS = ("symmetric", "none")


def _check_normalization(normalization: str) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}"
        )
    return normalization


def _symmetric_scale(mass: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(1 + mass)``: the per-pixel factor of the symmetric normalisation (mass = the
    kernel sum over the other pixels; the 1 is the pixel's own kernel value k(i, i) = 1)."""
    return torch.rsqrt(1.0 + mass)


def _check_theta(theta: Sequence[float]) -> tuple[float, ...]:
    theta = tuple(float(t) for t in theta)
    if len(theta) != 5 or min(theta) <= 0:
        raise ValueError(
            "theta must be 5 positive values (theta_a px, theta_b RGB, theta_g px, "
            f"theta_z m, theta_t px), got {theta}"
        )
    return theta


def _check_inputs(logits: torch.Tensor, rgb: torch.Tensor, depth: torch.Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
    n, _, h, w = logits.shape
    if tuple(rgb.shape) != (n, 3, h, w):
        raise ValueError(f"rgb must be (N, 3, H, W) = {(n, 3, h, w)}, got {tuple(rgb.shape)}")
    if tuple(depth.shape) != (n, 1, h, w):
        raise ValueError(f"depth must be (N, 1, H, W) = {(n, 1, h, w)}, got {tuple(depth.shape)}")


def potts_compatibility(
    num_classes: int, weights: Sequence[float] = DEFAULT_WEIGHTS
) -> torch.Tensor:
    """Potts compatibility ``mu_m = w_m (1 - I)`` for each kernel.

    Returns:
        (3, C, C) float32: ``mu[m, l, l']`` = ``w_m`` if ``l != l'`` else 0 (energy penalty).
    """
    if len(weights) != NUM_KERNELS:
        raise ValueError(f"need {NUM_KERNELS} kernel weights, got {len(weights)}")
    off = 1.0 - torch.eye(num_classes)
    return torch.stack([float(w) * off for w in weights])


def pairwise_features(
    rgb: torch.Tensor,
    depth: torch.Tensor,
    theta: Sequence[float] = DEFAULT_THETA,
    pixel_spacing: float = 1.0,
) -> list[torch.Tensor]:
    """Kernel feature maps, each already divided by its bandwidth.

    ``k_m(i, j) = exp(-|f_m,i - f_m,j|^2 / 2)`` with these features.

    Args:
        rgb: (N, 3, H, W) float, RGB in 0..255 at the CRF grid.
        depth: (N, 1, H, W) float, metres at the CRF grid.
        theta: (theta_a, theta_b, theta_g, theta_z, theta_t), see the module docstring.
        pixel_spacing: input-image pixels per CRF grid cell (e.g. 8 when the CRF runs at 1/8).

    Returns:
        [appearance (N, 5, H, W), depth (N, 3, H, W), smoothness (N, 2, H, W)] float tensors.
    """
    ta, tb, tg, tz, tt = _check_theta(theta)
    n, _, h, w = rgb.shape
    ys = torch.arange(h, dtype=rgb.dtype, device=rgb.device) * float(pixel_spacing)
    xs = torch.arange(w, dtype=rgb.dtype, device=rgb.device) * float(pixel_spacing)
    pos = (
        torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)])
        .unsqueeze(0)
        .expand(n, 2, h, w)
    )
    return [
        torch.cat([pos / ta, rgb / tb], dim=1),
        torch.cat([pos / tg, depth / tz], dim=1),
        pos / tt,
    ]


def _mean_field(
    logits: torch.Tensor, compat: torch.Tensor, message_fn, iterations: int
) -> torch.Tensor:
    """Parallel mean-field updates shared by the windowed and the exact CRF.

    ``message_fn(q)`` returns the per-kernel filtered marginals, a list of 3 (N, C, H, W).
    """
    out = logits
    for _ in range(int(iterations)):
        q = torch.softmax(out, dim=1)
        pairwise = 0
        for m, msg in enumerate(message_fn(q)):
            # (mu_m msg)_l = sum_l' mu_m[l, l'] msg_l' as a 1x1 convolution.
            pairwise = pairwise + F.conv2d(msg, compat[m].unsqueeze(-1).unsqueeze(-1))
        out = logits - pairwise
    return out


def _neighbourhood(x: torch.Tensor, window: int) -> torch.Tensor:
    """Gather each pixel's window x window neighbours (zero outside the image).

    Args:
        x: (N, D, H, W).
    Returns:
        (N, D, window^2, H, W); ``[:, :, o, y, x]`` = ``x[:, :, y + dy_o, x + dx_o]`` with
        offsets in raster order, ``o = (dy + r) * window + (dx + r)``, ``r = window // 2``.
    """
    n, d, h, w = x.shape
    k2 = window * window
    onehot = torch.eye(k2, dtype=x.dtype, device=x.device).view(k2, 1, window, window)
    out = F.conv2d(x, onehot.repeat(d, 1, 1, 1), padding=window // 2, groups=d)
    return out.view(n, d, k2, h, w)


class ConvCRF(nn.Module):
    """Mean-field dense CRF with windowed (local) message passing; trainable, exportable.

    Args:
        num_classes: C.
        window: odd neighbourhood size k (pairs with |dy|, |dx| <= k // 2 at the CRF grid).
        iterations: mean-field iterations (CRF-as-RNN: 5 in training, 10 at test).
        theta: kernel bandwidths (theta_a px, theta_b RGB 0..255, theta_g px, theta_z m,
            theta_t px); pixels of the network input image.
        weights: initial Potts weights (w1, w2, w3) of the compatibility matrices.
        learn_compat: make the (3, C, C) compatibility matrices trainable parameters.
        normalization: ``"symmetric"`` (default; see the module docstring, ``Z_i`` over the
            window) or ``"none"``.

    Memory per iteration: N * C * k^2 * H * W floats for the gathered marginals.
    """

    def __init__(
        self,
        num_classes: int,
        window: int = 11,
        iterations: int = 5,
        theta: Sequence[float] = DEFAULT_THETA,
        weights: Sequence[float] = DEFAULT_WEIGHTS,
        learn_compat: bool = True,
        normalization: str = "symmetric",
    ):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd number, got {window}")
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.num_classes = int(num_classes)
        self.window = int(window)
        self.iterations = int(iterations)
        self.theta = _check_theta(theta)
        self.normalization = _check_normalization(normalization)
        compat = potts_compatibility(num_classes, weights)
        if learn_compat:
            self.compat = nn.Parameter(compat)
        else:
            self.register_buffer("compat", compat)

    def kernels(self, rgb: torch.Tensor, depth: torch.Tensor, pixel_spacing: float = 1.0):
        """Windowed kernel values, (N, 3, k^2, H, W); zero for the centre and outside the image;
        symmetrically normalised over the window unless ``normalization="none"``."""
        n, _, h, w = rgb.shape
        r2 = self.window * self.window
        centre = torch.ones(r2, dtype=rgb.dtype, device=rgb.device)
        centre[r2 // 2] = 0.0  # no self-message (j != i)
        inside = _neighbourhood(
            torch.ones(1, 1, h, w, dtype=rgb.dtype, device=rgb.device), self.window
        )
        valid = inside.view(1, r2, h, w) * centre.view(1, r2, 1, 1)
        out = []
        for f in pairwise_features(rgb, depth, self.theta, pixel_spacing):
            diff = _neighbourhood(f, self.window) - f.unsqueeze(2)
            k = torch.exp(-0.5 * (diff * diff).sum(dim=1)) * valid  # (N, k^2, H, W)
            if self.normalization == "symmetric":
                s = _symmetric_scale(k.sum(dim=1, keepdim=True))  # (N, 1, H, W)
                k = k * s * _neighbourhood(s, self.window)[:, 0]  # s_i * s_j
            out.append(k)
        return torch.stack(out, dim=1)

    def forward(
        self,
        logits: torch.Tensor,
        rgb: torch.Tensor,
        depth: torch.Tensor,
        pixel_spacing: float = 1.0,
        iterations: int | None = None,
    ) -> torch.Tensor:
        """Run mean-field inference.

        Args:
            logits: (N, C, H, W) unary logits (``psi_u = -logits``).
            rgb: (N, 3, H, W) RGB 0..255 on the same grid.
            depth: (N, 1, H, W) metres on the same grid (e.g. the predicted depth).
            pixel_spacing: input-image pixels per grid cell.
            iterations: override ``self.iterations``.

        Returns:
            (N, C, H, W) CRF logits.

        Raises:
            ValueError: shapes that do not agree.
        """
        if not torch.jit.is_tracing():  # static shapes in an exported graph
            _check_inputs(logits, rgb, depth)
        kern = self.kernels(rgb, depth, pixel_spacing).to(logits.dtype)

        def messages(q):
            qn = _neighbourhood(q, self.window)  # (N, C, k^2, H, W)
            return [(kern[:, m].unsqueeze(1) * qn).sum(dim=2) for m in range(NUM_KERNELS)]

        its = self.iterations if iterations is None else iterations
        return _mean_field(logits, self.compat, messages, its)


def dense_kernels(
    rgb: torch.Tensor,
    depth: torch.Tensor,
    theta: Sequence[float] = DEFAULT_THETA,
    pixel_spacing: float = 1.0,
    window: int | None = None,
    normalization: str = "none",
) -> torch.Tensor:
    """Exact pairwise kernel matrices over all pixel pairs.

    Args:
        rgb, depth, theta, pixel_spacing: as :func:`pairwise_features`.
        window: if given, keep only pairs with |dy|, |dx| <= window // 2 (the ConvCRF support).
        normalization: ``"none"`` (raw kernels, the default here) or ``"symmetric"``
            (``k(i, j) / sqrt(Z_i Z_j)``, ``Z_i = 1 + sum_{j != i} k(i, j)`` over the kept
            pairs; the module docstring).

    Returns:
        (N, 3, HW, HW) float, zero diagonal; pixels in raster order.
    """
    _check_normalization(normalization)
    n, _, h, w = rgb.shape
    mats = []
    for f in pairwise_features(rgb, depth, theta, pixel_spacing):
        flat = f.flatten(2).transpose(1, 2)  # (N, HW, D)
        d2 = (flat.unsqueeze(2) - flat.unsqueeze(1)).pow(2).sum(-1)
        mats.append(torch.exp(-0.5 * d2))
    k = torch.stack(mats, dim=1)
    eye = torch.eye(h * w, dtype=k.dtype, device=k.device)
    mask = 1.0 - eye
    if window is not None:
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        yy, xx = yy.flatten(), xx.flatten()
        r = window // 2
        near = ((yy[:, None] - yy[None]).abs() <= r) & ((xx[:, None] - xx[None]).abs() <= r)
        mask = mask * near.to(k.dtype)
    k = k * mask
    if normalization == "symmetric":
        s = _symmetric_scale(k.sum(dim=-1))  # (N, 3, HW)
        k = k * s.unsqueeze(-1) * s.unsqueeze(-2)
    return k


def exact_dense_crf_meanfield(
    logits: torch.Tensor,
    rgb: torch.Tensor,
    depth: torch.Tensor,
    compat: torch.Tensor,
    theta: Sequence[float] = DEFAULT_THETA,
    iterations: int = 5,
    pixel_spacing: float = 1.0,
    normalization: str = "symmetric",
) -> torch.Tensor:
    """Reference mean-field over the fully connected CRF (all N^2 pairs, no truncation).

    Args:
        logits: (N, C, H, W) unary logits; rgb (N, 3, H, W) 0..255; depth (N, 1, H, W) metres.
        compat: (3, C, C) compatibility matrices (energy penalties).
        theta, iterations, pixel_spacing, normalization: as :class:`ConvCRF` (``Z_i`` over all
            pixels).

    Returns:
        (N, C, H, W) CRF logits. Memory O((HW)^2): use on small images only.
    """
    _check_inputs(logits, rgb, depth)
    n, c, h, w = logits.shape
    kern = dense_kernels(rgb, depth, theta, pixel_spacing, normalization=normalization).to(
        logits.dtype
    )

    def messages(q):
        qf = q.flatten(2)  # (N, C, HW); kernel symmetric, so Q K^T = Q K
        return [torch.bmm(qf, kern[:, m]).view(n, c, h, w) for m in range(NUM_KERNELS)]

    return _mean_field(logits, compat, messages, iterations)


def crf_energy(
    q_or_labels: torch.Tensor,
    unary: torch.Tensor,
    rgb: torch.Tensor,
    depth: torch.Tensor,
    compat: torch.Tensor,
    theta: Sequence[float] = DEFAULT_THETA,
    pixel_spacing: float = 1.0,
    window: int | None = None,
    normalization: str = "none",
) -> torch.Tensor:
    """CRF energy of a labelling, or its expectation under a factorised distribution Q.

    ``E = sum_i <q_i, u_i> + 1/2 sum_{i != j} sum_m k_m(i, j) q_i^T mu_m q_j``; for a hard
    labelling (one-hot q) and symmetric mu this is ``sum_i u_i(x_i) + sum_{i<j} mu(x_i, x_j) k``.

    Args:
        q_or_labels: (N, H, W) int64 labels in 0..C-1, or (N, C, H, W) float probabilities.
        unary: (N, C, H, W) unary energies ``psi_u`` (e.g. ``-logits`` or ``-log_softmax``).
        rgb, depth, theta, pixel_spacing: as :func:`pairwise_features`.
        compat: (3, C, C) compatibility matrices.
        window: restrict pairs to the ConvCRF window (None = fully connected).
        normalization: kernels as :func:`dense_kernels` (``"symmetric"`` for the energy that
            a normalised :class:`ConvCRF` with the same ``window`` minimises).

    Returns:
        (N,) float energies. Memory O((HW)^2): small images only.

    Raises:
        ValueError: labels out of range or shapes that do not agree.
    """
    n, c, h, w = unary.shape
    if q_or_labels.dtype in (torch.int64, torch.int32, torch.uint8):
        if tuple(q_or_labels.shape) != (n, h, w):
            raise ValueError(
                f"labels must be (N, H, W) = {(n, h, w)}, got {tuple(q_or_labels.shape)}"
            )
        if q_or_labels.min() < 0 or q_or_labels.max() >= c:
            raise ValueError(f"labels must lie in 0..{c - 1}")
        q = F.one_hot(q_or_labels.long(), c).permute(0, 3, 1, 2).to(unary.dtype)
    else:
        q = q_or_labels.to(unary.dtype)
    _check_inputs(q, rgb, depth)
    if q.shape[1] != c:
        raise ValueError(f"Q has {q.shape[1]} classes, unary {c}")
    kern = dense_kernels(rgb, depth, theta, pixel_spacing, window, normalization).to(unary.dtype)
    qf = q.flatten(2)  # (N, C, HW)
    e_unary = (q * unary).flatten(1).sum(1)
    e_pair = 0
    for m in range(NUM_KERNELS):
        kq = torch.bmm(qf, kern[:, m])  # (N, C, HW): sum_j k(i, j) q_j
        e_pair = e_pair + 0.5 * torch.einsum("nli,lk,nki->n", qf, compat[m], kq)
    return e_unary + e_pair
