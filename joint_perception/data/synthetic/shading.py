"""Light transport at the hit points: direct light of point and area emitters with cosine
falloff (Lambert diffuse, Blinn-Phong highlights on glossy surfaces), the tinted ambient term
(:func:`_shade`), auto exposure (:func:`_expose`) and the scene's mean light colour
(:func:`_illuminant`)."""

from __future__ import annotations

import numpy as np

from joint_perception.data.synthetic.color import _LUMA
from joint_perception.data.synthetic.raycast import _Hits
from joint_perception.data.synthetic.scene import Scene


def _emission(scene: Scene, j: int, lx, ly, lz, inv, d2) -> np.ndarray:
    """Irradiance scale (N,) of light ``j`` at distance^2 ``d2`` along unit direction
    ``(lx, ly, lz) * inv`` (surface to light): point lights fall off as ``6 / (6 + d^2)``;
    area emitters as ``r0^2 / (r0^2 + d^2)`` with ``r0^2`` growing with their size and with a
    ``0.25 + 0.75 cos`` lobe about their axis."""
    ext, axis = scene.light_extent[j], scene.light_dir[j]
    size2 = float(np.sum(ext**2))
    r0sq = 6.0 if size2 == 0 and not axis.any() else 1.0 + 2.0 * size2
    e = np.float32(scene.light_power[j] * r0sq) / (np.float32(r0sq) + d2)
    if axis.any():
        a = axis.astype(np.float32)
        e *= 0.25 + 0.75 * np.maximum(-(a[0] * lx + a[1] * ly + a[2] * lz) * inv, 0.0)
    return e


def _highlight(nw, view, L, d2, lam, e, k_spec, shin, size2: float) -> np.ndarray:
    """(n,) normalised Blinn-Phong highlight of one light on glossy pixels; the lobe widens
    for large or near emitters (their solid angle blurs it)."""
    h = L + view
    h /= np.linalg.norm(h, axis=1, keepdims=True) + 1e-6
    nh = np.maximum(np.einsum("ij,ij->i", nw, h), 0.0)
    s_eff = shin / (1.0 + shin * np.float32(size2 + 0.01) / d2)
    return k_spec * (s_eff + 8.0) / 8.0 * nh**s_eff * (lam > 0) * e


def _direct_light(scene: Scene, hits: _Hits, vis: np.ndarray, gloss, shininess):
    """Diffuse irradiance (N, 3) and specular radiance (N, 3) of all lights (Lambert, and
    Blinn-Phong with a Schlick-like Fresnel boost where ``gloss`` > 0), times ``vis``."""
    px, py, pz = (np.ascontiguousarray(hits.P[:, a]) for a in range(3))
    nx, ny, nz = (np.ascontiguousarray(hits.nw[:, a]) for a in range(3))
    diffuse = np.zeros((3, px.size), dtype=np.float32)
    spec = np.zeros((px.size, 3), dtype=np.float32)
    g = np.flatnonzero(gloss > 0)
    if g.size:
        nw_g, view_g = hits.nw[g], hits.view[g]
        fres = 1.0 + 4.0 * (1.0 - np.clip(np.einsum("ij,ij->i", nw_g, view_g), 0, 1)) ** 5
        k_spec, shin = (gloss[g] * fres).astype(np.float32), shininess[g].astype(np.float32)
    for j in range(len(scene.lights)):
        pos = scene.lights[j].astype(np.float32)
        lx, ly, lz = pos[0] - px, pos[1] - py, pos[2] - pz
        d2 = lx * lx + ly * ly + lz * lz
        inv = 1.0 / np.sqrt(d2)
        lam = np.maximum((nx * lx + ny * ly + nz * lz) * inv, 0.0)
        e = _emission(scene, j, lx, ly, lz, inv, d2) * vis[:, j]
        w = e * lam
        col = scene.light_color[j].astype(np.float32)
        for c in range(3):
            diffuse[c] += w * col[c]
        if g.size:
            L = np.stack([lx[g], ly[g], lz[g]], axis=1) * inv[g, None]
            size2 = float(np.sum(scene.light_extent[j] ** 2))
            hl = _highlight(nw_g, view_g, L, d2[g], lam[g], e[g], k_spec, shin, size2)
            spec[g] += hl[:, None] * col
    return diffuse.T, spec


def _shade(scene: Scene, hits: _Hits, albedo_lin, ao, vis) -> np.ndarray:
    """Linear radiance (N, 3): albedo x (direct + ambient) x occlusion + highlights."""
    mid = np.asarray(scene.material_ids)[hits.of]
    gloss = np.array([m.gloss for m in scene.materials], dtype=np.float32)[mid]
    shin = np.array([m.shininess for m in scene.materials], dtype=np.float32)[mid]
    diffuse, spec = _direct_light(scene, hits, vis, gloss, shin)
    amb = np.float32(scene.ambient) * np.asarray(scene.ambient_color, dtype=np.float32)
    return albedo_lin * ((diffuse + amb) * ao[:, None]) + spec


def _centre_weights(height: int, width: int) -> np.ndarray:
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    return (1.0 - 0.5 * (x * x + y * y) / 2.0).reshape(-1)


def _expose(lin, albedo_lin, emis, height: int, width: int) -> np.ndarray:
    """Auto exposure: centre-weighted mean luminance of the non-emissive pixels -> 0.2;
    emissive pixels get ``albedo x emissive`` (relative to that target). (H, W, 3)."""
    lum = lin @ _LUMA
    w = _centre_weights(height, width) * (emis == 0)
    mean = float(np.sum(lum * w) / np.sum(w)) if np.any(emis == 0) else 0.2
    out = lin * np.float32(0.2 / max(mean, 1e-4))
    glow = np.flatnonzero(emis > 0)
    out[glow] = albedo_lin[glow] * emis[glow, None]
    return out.reshape(height, width, 3)


def _illuminant(scene: Scene) -> np.ndarray:
    """Power-weighted mean light colour (3,), what an auto white balance would estimate."""
    if not scene.lights:
        return np.ones(3)
    w = np.asarray(scene.light_power)[:, None]
    return np.sum(np.asarray(scene.light_color) * w, axis=0) / max(float(w.sum()), 1e-9)
