"""Non-local affinity learning and propagation of PAP (Zhang et al., CVPR 2019, section 3.2).

Three pieces, each a small module that exports to ONNX opset 17 with static shapes:

* :class:`AffinityLearning` -- ``F (N, 2C, H, W) -> 1x1 conv -> X (N, HW, C)``,
  ``M = softmax_rows(X X^T / sqrt(C))``: exactly the paper's ``exp`` followed by row
  normalisation ``M_ij / sum_k M_ik`` (softmax subtracts the row maximum first, which
  changes nothing mathematically but keeps ``exp`` finite). The ``1/sqrt(C)`` is a fixed
  reparametrisation the 1x1 conv could learn anyway; it keeps the initial rows from being
  one-hot.
* :func:`combine_affinities` / :class:`CrossTaskPropagation` -- cross-task propagation
  ``M_hat_Ti = sum_k alpha^Ti_k M_Tk`` with ``alpha^Ti = softmax(logits_i)`` on the simplex.
* :class:`TaskPropagation` -- task-specific diffusion ``h^(t+1) = M_hat h^t`` for ``t*``
  iterations, output ``h_out = beta h^(t*) + (1 - beta) h^0`` (beta = 0.05 in the paper).

Pair subsampling (the paper's "1/4 of the pairs, as non-local networks do"): with
``subsample = s`` the *source* (column) side of every affinity lives on an ``s x s``
average-pooled grid, so ``M`` is ``(HW) x (HW / s^2)`` -- 1/4 of the pairs for ``s = 2``.
Every diffusion step average-pools ``h^t`` onto the same grid before multiplying, i.e. each
target position gathers from 2x2 source cells. Average pooling (instead of the max pooling of
Wang et al. 2018) keeps a constant map constant under diffusion, which depth needs.
Rows stay stochastic over the pooled sources. ``subsample = 1`` is the full ``HW x HW``.

Memory: at 1/8 of 480x640 (60x80 = 4800 positions) one affinity is 4800 x 1200 float32
= 23 MB with ``s = 2`` (92 MB with ``s = 1``); PAP keeps one per task plus the combined ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def pool_sources(x: torch.Tensor, subsample: int) -> torch.Tensor:
    """Average-pool a feature map onto the affinity's source grid.

    Args:
        x: (N, C, H, W) float tensor.
        subsample: pooling factor s >= 1 (1 returns ``x`` unchanged). Sizes that are not
            multiples of s are handled with ``ceil_mode`` (border cells average the pixels
            they hold).

    Returns:
        (N, C, ceil(H/s), ceil(W/s)).
    """
    if subsample == 1:
        return x
    return F.avg_pool2d(x, kernel_size=subsample, stride=subsample, ceil_mode=True)


class AffinityLearning(nn.Module):
    """Learn a non-negative, row-stochastic affinity from a feature map (PAP eq. 1).

    Args:
        in_channels: channels of F (2C in the paper: task feature + shared feature).
        embed_channels: C, channels of the embedding X.
        subsample: source-grid pooling factor s (2 = 1/4 of the pairs).

    ``forward(f)``: f (N, in_channels, H, W) -> M (N, H*W, Hs*Ws) float, ``M >= 0`` and every
    row sums to 1, with (Hs, Ws) = ceil((H, W) / s). Row i is the target position
    ``i = y * W + x``; column j a source cell of the pooled grid in the same raster order.
    """

    def __init__(self, in_channels: int, embed_channels: int, subsample: int = 2):
        super().__init__()
        if subsample < 1:
            raise ValueError(f"subsample must be >= 1, got {subsample}")
        self.embed = nn.Conv2d(in_channels, embed_channels, kernel_size=1)
        self.subsample = int(subsample)
        self.scale = 1.0 / math.sqrt(embed_channels)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = self.embed(f)  # (N, C, H, W)
        xs = pool_sources(x, self.subsample)  # (N, C, Hs, Ws)
        q = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        k = xs.flatten(2)  # (N, C, HsWs)
        return torch.softmax(torch.matmul(q, k) * self.scale, dim=-1)


def combine_affinities(affinities: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Cross-task combination ``M_hat_i = sum_k alpha[i, k] M_k`` (PAP eq. 2).

    Args:
        affinities: (T, N, P, S) stacked per-task affinities.
        alpha: (T, T) weights; row i is task i's convex combination (rows on the simplex).

    Returns:
        (T, N, P, S). Convex combinations of row-stochastic matrices are row-stochastic.
    """
    t = affinities.shape[0]
    flat = affinities.reshape(t, -1)
    return torch.matmul(alpha, flat).reshape(affinities.shape)


class CrossTaskPropagation(nn.Module):
    """Learned ``alpha`` (T x T, each row softmax-normalised) mixing the task affinities.

    Args:
        num_tasks: T.

    The logits start at zero, i.e. every task starts from the mean affinity of all tasks.
    ``forward(affinities (T, N, P, S)) -> (T, N, P, S)``.
    """

    def __init__(self, num_tasks: int):
        super().__init__()
        self.alpha_logits = nn.Parameter(torch.zeros(num_tasks, num_tasks))

    @property
    def alpha(self) -> torch.Tensor:
        """(T, T) weights, rows non-negative and summing to 1."""
        return torch.softmax(self.alpha_logits, dim=1)

    def forward(self, affinities: torch.Tensor) -> torch.Tensor:
        return combine_affinities(affinities, self.alpha)


def diffuse(
    h0: torch.Tensor, affinity: torch.Tensor, iterations: int, beta: float, subsample: int
) -> torch.Tensor:
    """Task-specific propagation ``h^(t+1) = M pool(h^t)``; ``beta h^(t*) + (1-beta) h^0``.

    Args:
        h0: (N, C, H, W) features (or initial prediction) to diffuse.
        affinity: (N, H*W, Hs*Ws) row-stochastic affinity whose source grid is ``h``
            pooled by ``subsample``.
        iterations: t* >= 0 (0 returns ``h0``).
        beta: weight of the diffused map, in [0, 1].
        subsample: the affinity's source pooling factor s.

    Returns:
        (N, C, H, W) ``h_out``.

    Raises:
        ValueError: affinity shape does not match h0.
    """
    n, c, h, w = h0.shape
    if not torch.jit.is_tracing() and affinity.shape[-2] != h * w:
        raise ValueError(f"affinity has {affinity.shape[-2]} rows, feature map {h}x{w} has {h * w}")
    ht = h0
    for _ in range(iterations):
        src = pool_sources(ht, subsample).flatten(2)  # (N, C, S)
        ht = torch.matmul(src, affinity.transpose(1, 2)).reshape(n, c, h, w)
    return beta * ht + (1.0 - beta) * h0


class TaskPropagation(nn.Module):
    """Module wrapper of :func:`diffuse` holding ``t*``, ``beta`` and ``s`` (no parameters)."""

    def __init__(self, iterations: int = 2, beta: float = 0.05, subsample: int = 2):
        super().__init__()
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.iterations = int(iterations)
        self.beta = float(beta)
        self.subsample = int(subsample)

    def forward(self, h0: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
        return diffuse(h0, affinity, self.iterations, self.beta, self.subsample)
