"""Colour conversions: linear-light luminance weights, HSV to RGB and the colour of a black
body (:func:`kelvin_to_rgb`)."""

from __future__ import annotations

import numpy as np

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # linear-light luminance weights


def _hsv_to_rgb(h, s, v) -> np.ndarray:
    h = np.asarray(h, dtype=np.float32) * 6.0
    s = np.asarray(s, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    k = np.stack([(5.0 + h) % 6, (3.0 + h) % 6, (1.0 + h) % 6], axis=-1)
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Linear RGB of a black body at ``kelvin`` (K) seen by a camera white-balanced for 6500 K,
    scaled to unit luminance: (3,) float64, red-heavy below 6500 K, blue-heavy above.

    Planck's law sampled 380-720 nm and weighted by Gaussian red/green/blue sensitivities
    (a rough camera model, good enough for relative light colours).
    """
    lam = np.arange(380.0, 721.0, 10.0)

    def response(t: float) -> np.ndarray:
        m = lam * 1e-9
        planck = m**-5 / np.expm1(0.0143877 / (m * t))
        sens = np.exp(-0.5 * ((lam[None, :] - np.array([[600.0], [545.0], [455.0]])) / 35.0) ** 2)
        return sens @ planck

    rgb = response(float(kelvin)) / response(6500.0)
    return rgb / float(_LUMA.astype(np.float64) @ rgb)
