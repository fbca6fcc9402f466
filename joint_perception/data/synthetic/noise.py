"""Deterministic procedural randomness for textures and sampling: 2-D value noise on a random
lattice (:class:`_Noise`) and an integer hash to [0, 1) (:func:`_hash01`)."""

from __future__ import annotations

import numpy as np


class _Noise:
    """2-D value noise from a 256x256 random lattice, bilinear with smoothstep."""

    def __init__(self, rng: np.random.Generator):
        self.table = rng.random((256, 256), dtype=np.float32)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xf, yf = np.floor(x), np.floor(y)
        fx, fy = x - xf, y - yf
        fx = fx * fx * (3 - 2 * fx)
        fy = fy * fy * (3 - 2 * fy)
        xi = xf.astype(np.int64) & 255
        yi = yf.astype(np.int64) & 255
        x1, y1 = (xi + 1) & 255, (yi + 1) & 255
        tb = self.table
        a = tb[yi, xi] + fx * (tb[yi, x1] - tb[yi, xi])
        b = tb[y1, xi] + fx * (tb[y1, x1] - tb[y1, xi])
        return a + fy * (b - a)

    def fbm(self, x, y, octaves: int = 2) -> np.ndarray:
        out = self(x, y)
        amp, total = 0.5, 1.0
        for o in range(1, octaves):
            out = out + amp * self(x * 2**o + 17.0 * o, y * 2**o - 31.0 * o)
            total += amp
            amp *= 0.5
        return out / total


def _hash01(k: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer."""
    k = (np.asarray(k).astype(np.int64) * 2654435761 + 12345) & 0xFFFFFFFF
    k = (k ^ (k >> 15)) * 2246822519 & 0xFFFFFFFF
    return ((k ^ (k >> 13)) & 0xFFFF).astype(np.float32) / 65536.0
