"""The formats of the :class:`~.dataset.SevenScenes` cache: the key digest (with the cache
version, so that existing caches stay valid exactly as long as the version does) and the
8-bit RGB encoding of normals."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np

#: part of every cache key: bump it when the registration, normal or label code changes
_CACHE_VERSION = 1


def _digest(obj) -> str:
    """12 hex digits of the SHA-256 of ``obj`` (JSON) and :data:`_CACHE_VERSION`."""
    text = json.dumps({"v": _CACHE_VERSION, **obj}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _encode_normals(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals -> RGB uint8 ``round((n + 1) * 127.5)``; invalid (NaN or zero)
    -> (127, 127, 127), which decodes as invalid (as in :func:`nyuv2.read_normals_png`)."""
    n = np.asarray(normals, np.float32)
    rgb = cv2.convertScaleAbs(np.nan_to_num(n), alpha=127.5, beta=127.5)
    flat = n.reshape(-1, 3)
    bad = ~((flat * flat) @ np.ones(3, np.float32) > 0.25)  # NaN compares False -> bad
    rgb.reshape(-1, 3)[bad] = 127
    return rgb


def _decode_normals(rgb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_encode_normals`: (H, W, 3) float32 unit vectors, 0 where invalid."""
    n = rgb.astype(np.float32)
    n *= np.float32(1.0 / 127.5)
    n -= np.float32(1.0)
    len2 = cv2.transform(cv2.multiply(n, n), np.ones((1, 3), np.float32))
    inv = np.zeros_like(len2)
    ok = len2 > 0.25
    inv[ok] = 1.0 / np.sqrt(len2[ok])
    return cv2.multiply(n, cv2.merge([inv, inv, inv]))
