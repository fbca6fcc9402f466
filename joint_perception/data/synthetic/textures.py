"""Procedural textures: the sRGB albedo of every hit pixel from its material's texture kind
(:func:`_albedo`, one function per kind in ``_TEXTURES``).

Painted walls with gradients and baseboards, wallpaper, two-tone walls, wood grain and floor
planks, tiles, carpet, woven fabric and curtains, drop ceilings, image-like pictures and
posters, text on paper and whiteboards, cabinet fronts with seams and handles, book spines,
views of buildings or trees. Thin lines stay visible and dense detail fades with the pixel
footprint instead of aliasing (:func:`_lod`, :func:`_lines`).
"""

from __future__ import annotations

import math

import numpy as np

from joint_perception.data.synthetic.color import _hsv_to_rgb
from joint_perception.data.synthetic.noise import _hash01, _Noise
from joint_perception.data.synthetic.scene import (
    _GRAIN,
    BOOKS,
    CARPET,
    GRID,
    IMAGE,
    NOISE,
    PAINT,
    PANEL,
    PLAIN,
    STRIPES,
    TEXT,
    TILES,
    WEAVE,
    WINDOW,
    WOOD,
    Scene,
)


def _lod(footprint: np.ndarray, freq) -> np.ndarray:
    """Weight in [0, 1] of texture detail of ``freq`` cycles per metre on a surface seen with
    pixel ``footprint`` metres: 1 when well resolved, 0 near the Nyquist limit (detail that
    would alias fades to its mean, a cheap stand-in for texture filtering)."""
    return np.clip((0.5 - footprint * freq) * 3.3, 0.0, 1.0)


def _lines(dist, width, footprint, period=np.inf) -> np.ndarray:
    """Coverage in [0, 1] of lines ``width`` metres wide, ``dist`` metres from a line centre,
    seen with pixel ``footprint``: a line thinner than a pixel still draws a one-pixel line
    of partial contrast ``width / footprint`` (as a camera would), and lines less than ~2.5
    pixels apart fade to their mean coverage ``width / period`` (no aliasing)."""
    fp = np.maximum(footprint, 1e-6)
    cov = (dist < np.maximum(width, fp) / 2) * np.minimum(1.0, width / fp)
    return np.where(fp * 2.5 > period, width / period, cov).astype(np.float32)


def _mix(c1: np.ndarray, c2: np.ndarray, t) -> np.ndarray:
    return c1 + np.asarray(t, dtype=np.float32)[:, None] * (c2 - c1)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


class _TexCtx:
    """Per-pixel inputs of the texture functions (flattened hit pixels).

    ``uc, vc``: face-plane coordinates from the face centre (metres; ``v`` is up on vertical
    faces), ``hu, hv`` the face half extents, ``u, v`` coordinates shifted per object (for
    noise), ``z`` the height above the object's bottom (world height on walls)."""

    def __init__(self, scene: Scene, obj, face, p_local, footprint, noise: _Noise):
        mid = np.asarray(scene.material_ids)[obj]

        def table(attr, dtype):
            return np.take(
                np.array([getattr(m, attr) for m in scene.materials], dtype=dtype), mid, axis=0
            )

        self.col1, self.col2 = table("color", np.float32), table("color2", np.float32)
        self.col3 = table("color3", np.float32)
        self.kind, self.pattern = table("kind", np.int16), table("pattern", np.int16)
        self.s = table("scale", np.float32)
        half = np.asarray(scene.halves, dtype=np.float32)[obj]
        axis = face // 2
        self.uc = np.where(axis == 0, p_local[:, 1], p_local[:, 0])
        self.vc = np.where(axis == 2, p_local[:, 1], p_local[:, 2])
        self.hu = np.where(axis == 0, half[:, 1], half[:, 0])
        self.hv = np.where(axis == 2, half[:, 1], half[:, 2])
        self.z = p_local[:, 2] + half[:, 2]
        off = (obj.astype(np.float32) * 7.31) % 50.0
        self.u, self.v = self.uc + off, self.vc + 0.5 * off
        self.obj, self.face, self.fp, self.noise = obj, face, footprint, noise


def _tex_plain(c: _TexCtx, i):
    return c.col1[i]


def _tex_noise(c: _TexCtx, i):
    s = c.s[i]
    g = c.noise.fbm(c.u[i] * s, c.v[i] * s, 2)
    return _mix(c.col1[i], c.col2[i], 0.5 + (g - 0.5) * _lod(c.fp[i], s))


def _tex_wood(c: _TexCtx, i):
    """Wood: ``pattern`` 0 swirly rings (basic), 1 fine straight grain with slow tone changes,
    2 the same as floor planks (seams, staggered joints, per-plank tone)."""
    u, v, s = c.u[i], c.v[i], c.s[i]
    pat = c.pattern[i]
    ring = np.sin((v * s * 6.0 + 4.0 * c.noise(u * 0.7 * s, v * 4.0 * s)) * 2.0) * 0.5 + 0.5
    t = 0.3 + (ring**3 - 0.3) * _lod(c.fp[i], 2.0 * s)
    fine = pat > 0
    if fine.any():
        uf, vf, sf = u[fine], v[fine], s[fine]
        warp = c.noise(uf * 0.8 * sf, vf * 3.0 * sf)
        lines = (0.5 + 0.5 * np.sin(2 * math.pi * (vf * sf * 6.0 + 2.0 * warp))) ** 2
        tone = c.noise.fbm(uf * 0.7, vf * 2.5, 2) - 0.5
        t[fine] = 0.4 + (lines - 0.4) * 0.8 * _lod(c.fp[i][fine], 6.0 * sf) + 0.6 * tone
    out = _mix(c.col1[i], c.col2[i], t)
    planks = np.flatnonzero(pat == 2)
    if planks.size:
        vp = v[planks] * 6.5
        row = np.floor(vp)
        joint = _frac(u[planks] * 0.7 + _hash01(row * 31 + 7))
        fp = c.fp[i][planks]
        seam = np.maximum(
            _lines(np.minimum(_frac(vp), 1 - _frac(vp)) / 6.5, 0.004, fp, 1 / 6.5),
            _lines(np.minimum(joint, 1 - joint) / 0.7, 0.004, fp),
        )
        shade = 1.0 + 0.25 * (
            _hash01(row * 13 + np.floor(u[planks] * 0.7 + _hash01(row * 31 + 7))) - 0.5
        )
        out[planks] *= (shade * (1.0 - 0.5 * seam))[:, None]
    return out


def _tex_tiles(c: _TexCtx, i):
    s = c.s[i]
    us, vs = c.u[i] * s, c.v[i] * s
    ti, tj = np.floor(us), np.floor(vs)
    fu, fv = us - ti, vs - tj
    edge = np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv))
    grout = _lines(edge / s, 0.05 / s, c.fp[i], 0.5 / s)
    cell = _hash01(ti * 7919 + tj * 31 + c.obj[i])
    checker = np.where(c.pattern[i] == 1, 0.15 * ((ti + tj) % 2), 0.0)
    base = c.col1[i] * (1.0 + 0.12 * (cell - 0.5) - checker)[:, None]
    return _mix(base, c.col2[i], grout)


def _tex_stripes(c: _TexCtx, i):
    s = c.s[i]
    g = c.noise(c.u[i] * 5.0, c.v[i] * 5.0)
    band = (np.sin(c.v[i] * s * 2 * math.pi) > 0.6) * 0.8
    lod = _lod(c.fp[i], s)
    return _mix(c.col1[i], c.col2[i], band * lod + 0.26 * (1 - lod) + 0.2 * g)


def _tex_books(c: _TexCtx, i):
    us = c.u[i] * c.s[i]
    bi = np.floor(us)
    hue = _hash01(bi + 1000 * c.obj[i])
    val = 0.3 + 0.55 * _hash01(bi * 7 + 3)
    rgb = _hsv_to_rgb(hue, 0.25 + 0.55 * _hash01(bi * 13 + 5), val)
    lod = _lod(c.fp[i], c.s[i])
    gap = (us - bi) < 0.08
    rgb = rgb * np.where(gap, 0.3, 1.0)[:, None] * lod[:, None] + (1 - lod)[:, None] * 0.42
    label = (np.abs(c.vc[i] - 0.3 * c.hv[i]) < 0.015) & (np.abs(us - bi - 0.55) < 0.25)
    return np.where(label[:, None], 0.85, rgb)


def _tex_window(c: _TexCtx, i):
    """The view out of a window: sky gradient over buildings (pattern 1) or trees (0);
    pattern bit 2 adds mullions."""
    h = (c.vc[i] + c.hv[i]) / np.maximum(2 * c.hv[i], 1e-3)  # 0 bottom .. 1 top
    g = c.noise.fbm(c.u[i] * 3.0, c.v[i] * 3.0, 2)
    out = c.col1[i] * (0.7 + 0.35 * h + 0.1 * (g - 0.5))[:, None]
    horizon = 0.25 + 0.4 * _hash01(c.obj[i] * 3 + 1)
    low = h < horizon + 0.15 * (g - 0.5)
    bld = (c.pattern[i] & 1) == 1
    cols = _frac(c.uc[i] * 7.0) > 0.35
    flo = _frac(c.vc[i] * 5.0) > 0.45
    facade = np.where((cols & flo)[:, None], c.col3[i], c.col2[i])
    trees = c.col2[i] * (0.6 + 0.8 * c.noise.fbm(c.u[i] * 12.0, c.v[i] * 12.0, 2))[:, None]
    out = np.where((low & bld)[:, None], facade, out)
    out = np.where((low & ~bld)[:, None], trees, out)
    bar = (c.pattern[i] & 2) > 0
    bar &= (np.abs(c.uc[i]) < 0.02) | (np.abs(c.vc[i] + 0.1 * c.hv[i]) < 0.02)
    return np.where(bar[:, None], 0.45, out)


def _tex_carpet(c: _TexCtx, i):
    u, v, s = c.u[i], c.v[i], c.s[i]
    fine = c.noise(u * s, v * s) - 0.5
    mottle = c.noise.fbm(u * 1.3, v * 1.3, 2) - 0.5
    out = c.col1[i] * (1.0 + 0.7 * fine * _lod(c.fp[i], s) + 0.35 * mottle)[:, None]
    striped = c.pattern[i] == 1
    band = _frac(u * 4.0 + 0.3 * np.sin(v * 0.5)) < 0.2
    lod = _lod(c.fp[i], 4.0 * 5)
    t = np.where(striped, 0.6 * (band * lod + 0.2 * (1 - lod)), 0.0)
    return _mix(out, c.col2[i] * (1.0 + 0.5 * fine)[:, None], t)


def _tex_weave(c: _TexCtx, i):
    """Woven fabric: thread cross-hatch, creases and a plaid (1) or stripe (2) pattern, or the
    vertical folds of a curtain (3)."""
    u, v, s = c.u[i], c.v[i], c.s[i]
    weave = np.sin(u * s * 2 * math.pi) * np.sin(v * s * 2 * math.pi)
    folds = c.noise.fbm(u * 1.5, v * 1.5, 2) - 0.5
    pat = c.pattern[i]
    drape = np.sin(2 * math.pi * (u * 7.0 + 0.6 * c.noise(u * 2.0, v * 0.5))) * (pat == 3)
    shade = 1.0 + 0.15 * weave * _lod(c.fp[i], s) + 0.15 * folds + 0.3 * drape * _lod(c.fp[i], 7.0)
    lod = _lod(c.fp[i], 16.0)
    plaid = ((_frac(u * 4.0) < 0.25) | (_frac(v * 4.0) < 0.25)) & (pat == 1)
    stripe = (_frac(u * 5.0) < 0.5) & (pat == 2)
    t = 0.55 * ((plaid | stripe) * lod + ((pat == 1) | (pat == 2)) * 0.35 * (1 - lod))
    return _mix(c.col1[i], c.col2[i], t) * shade[:, None]


def _tex_paint(c: _TexCtx, i):
    """Painted wall: roller unevenness, a gradient, baseboard (color3); pattern 1 striped and
    2 dotted wallpaper (color2), 3 a two-tone wall with a chair rail."""
    u, v, z, s = c.u[i], c.v[i], c.z[i], c.s[i]
    shade = 1.0 + 0.04 * (c.noise(u * 0.4, v * 0.4) - 0.5) + 0.05 * np.clip(z / 2.5, 0, 1)
    out = c.col1[i] * shade[:, None]
    pat = c.pattern[i]
    lod = _lod(c.fp[i], 2.0 * s)
    stripe = (_frac(u * s) < 0.5) & (pat == 1)
    dots = (np.hypot(_frac(u * s) - 0.5, _frac(z * s) - 0.5) < 0.2) & (pat == 2)
    t = (stripe | dots) * lod + ((pat == 1) * 0.5 + (pat == 2) * 0.12) * (1 - lod)
    out = _mix(out, c.col2[i] * shade[:, None], 0.6 * t)
    low = (pat == 3) & (z < 0.9)
    out = np.where(low[:, None], c.col2[i] * shade[:, None], out)
    trim = (z < 0.09) | ((pat == 3) & (np.abs(z - 0.9) < 0.025))
    return np.where(trim[:, None], c.col3[i], out)


def _tex_image(c: _TexCtx, i):
    """Image-like content for pictures, posters and screens. ``pattern & 3``: 1 adds a frame
    (color3), 2 a white margin; ``pattern >> 2`` picks the content: 0 colour regions with
    hard and soft edges, 1 a landscape (sky, horizon, ground), 2 a collage of rectangles,
    3 a poster with a title bar."""
    x = c.uc[i] / np.maximum(c.hu[i], 1e-3)
    y = c.vc[i] / np.maximum(c.hv[i], 1e-3)
    seed = (c.obj[i] % 97).astype(np.float32) * 3.7
    f, style = c.s[i], c.pattern[i] >> 2
    c1, c2, c3 = c.col1[i], c.col2[i], c.col3[i]
    g1 = c.noise.fbm(x * f + seed, y * f - seed, 3)
    g2 = c.noise.fbm(x * f * 2.1 - seed, y * f * 1.7 + seed, 2)
    region = np.clip((g1 - 0.3) * 2.5, 0.0, 0.999) * 3.0  # three colour regions, hard borders
    out = np.where((region < 1)[:, None], c1, np.where((region < 2)[:, None], c2, c3))
    out = _mix(out, c2, np.clip((g2 - 0.45) * 2.0, 0, 0.6))
    horizon = 0.3 * (_hash01(c.obj[i]) - 0.5) + 0.25 * (g2 - 0.5)
    sky = _mix(np.full_like(c1, 0.9), c1, 0.4 + 0.3 * (1 - y))
    land = np.where(
        (y > horizon)[:, None], sky, _mix(c3, c2, np.clip(horizon - y, 0, 1) + 0.3 * g1)
    )
    cells = _hash01(
        np.floor((x + 1) * (1 + f)) * 31 + np.floor((y + 1) * (1 + 0.7 * f)) * 7 + c.obj[i]
    )
    collage = np.where((cells < 0.33)[:, None], c1, np.where((cells < 0.66)[:, None], c2, c3))
    title = _mix(
        c3, np.full_like(c3, 0.95), ((np.abs(y - 0.78) < 0.06) & (_frac(x * 6) < 0.7)) * 1.0
    )
    out = np.where((style == 1)[:, None], land, out)
    out = np.where((style == 2)[:, None], collage * (0.8 + 0.3 * g2)[:, None], out)
    out = np.where(((style == 3) & (y > 0.6))[:, None], title, out)
    out = out * (0.75 + 0.3 * g2)[:, None]
    edge = np.minimum(c.hu[i] - np.abs(c.uc[i]), c.hv[i] - np.abs(c.vc[i]))
    frame = (c.pattern[i] & 3) == 1
    margin = ((c.pattern[i] & 3) == 2) & (edge < 0.05)
    out = np.where((frame & (edge < 0.035))[:, None], c3 * 0.5, out)
    return np.where(margin[:, None], 0.92, out)


def _tex_text(c: _TexCtx, i):
    """Paper, notices, whiteboards: lines of word-like ink marks (color2) on color1; ``scale``
    is lines per metre, pattern 1 writes sparsely (whiteboards)."""
    s = c.s[i]
    x = c.uc[i] + c.hu[i]
    y = c.hv[i] - c.vc[i]
    row = np.floor(y * s)
    word_f = x * s * 0.4 + 3.0 * _hash01(row + 17 * c.obj[i])
    word = np.floor(word_f)
    sparse = np.where(c.pattern[i] == 1, 0.75, 0.3)
    sparse_row = c.pattern[i] == 1
    ink = (_frac(y * s) < np.where(sparse_row, 0.2, 0.55)) & (_frac(word_f) < 0.8)
    ink &= _hash01(row * 131 + word * 7 + c.obj[i] * 3) > sparse
    ink &= _hash01(row * 7 + c.obj[i]) > 0.15
    mx, my = 0.12 * c.hu[i] + 0.005, 0.1 * c.hv[i] + 0.005
    ink &= (x > mx) & (x < 2 * c.hu[i] - mx) & (y > my) & (y < 2 * c.hv[i] - my)
    ink &= x < 2 * c.hu[i] * (0.55 + 0.45 * _hash01(row * 3 + c.obj[i]))
    lod = _lod(c.fp[i], 1.4 * s)
    t = ink * lod + (1 - lod) * np.where(c.pattern[i] == 1, 0.05, 0.15)
    return _mix(c.col1[i], c.col2[i], 0.85 * t)


def _tex_grid(c: _TexCtx, i):
    """Drop ceiling: tiles of 1 / scale metres with fissures between T-bars (color2)."""
    s = c.s[i]
    us, vs = c.uc[i] * s, c.vc[i] * s
    fu, fv = _frac(us), _frac(vs)
    bar = _lines(
        np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) / s, 0.025, c.fp[i], 0.5 / s
    )
    fiss = c.noise(c.u[i] * 60.0, c.v[i] * 60.0) - 0.5
    cell = _hash01(np.floor(us) * 613 + np.floor(vs) * 37)
    base = c.col1[i] * (1.0 + 0.06 * (cell - 0.5) + 0.25 * fiss * _lod(c.fp[i], 60.0))[:, None]
    return _mix(base, c.col2[i], bar)


def _tex_panel(c: _TexCtx, i):
    """Fronts of cabinets, drawers and doors (front = local +y face, room doors both sides):
    seams (color2) and handles (color3); pattern bit ``_GRAIN`` gives a wood base."""
    pat = c.pattern[i]
    grain = (pat & _GRAIN) > 0
    base = np.empty((i.size, 3), dtype=np.float32)
    base[grain] = _tex_wood(c, i[grain])
    base[~grain] = _tex_noise(c, i[~grain])
    layout = pat & 3
    front = (c.face[i] == 3) | ((layout == 2) & (c.face[i] // 2 == 1))
    uc, vc, hu, hv = c.uc[i], c.vc[i], c.hu[i], c.hv[i]
    edge = np.minimum(hu - np.abs(uc), hv - np.abs(vc))
    s = c.s[i]
    fr = _frac((vc + hv) * s)
    fp = c.fp[i]
    seam = _lines(edge, 0.012, fp)
    seam = np.maximum(seam, _lines(np.abs(uc), 0.006, fp) * ((layout == 0) & (hu > 0.28)))
    drawer = _lines(np.minimum(fr, 1 - fr) / s, 0.006, fp, 1 / s) * (layout == 1)
    inset = _lines(np.abs(edge - 0.09), 0.01, fp) * ((layout == 2) & (np.abs(vc + 0.05) > 0.02))
    seam = np.maximum(np.maximum(seam, drawer), inset)
    handle = (layout == 0) & (np.abs(np.abs(uc) - 0.04) < 0.012) & (np.abs(vc - 0.3 * hv) < 0.06)
    handle |= (layout == 1) & (np.abs(uc) < 0.07) & (np.abs(fr - 0.5) < 0.06)
    handle |= (layout == 2) & (np.abs(uc - hu + 0.09) < 0.025) & (np.abs(vc + 0.05) < 0.025)
    base = base * (1.0 - 0.65 * seam * front)[:, None]
    return np.where((front & handle)[:, None], c.col3[i], base)


_TEXTURES = {
    PLAIN: _tex_plain,
    NOISE: _tex_noise,
    WOOD: _tex_wood,
    TILES: _tex_tiles,
    STRIPES: _tex_stripes,
    BOOKS: _tex_books,
    WINDOW: _tex_window,
    CARPET: _tex_carpet,
    WEAVE: _tex_weave,
    PAINT: _tex_paint,
    IMAGE: _tex_image,
    TEXT: _tex_text,
    GRID: _tex_grid,
    PANEL: _tex_panel,
}


def _albedo(scene: Scene, obj, face, p_local, footprint, noise: _Noise) -> np.ndarray:
    """sRGB albedo (P, 3) of hit pixels from object ids, faces, box-local hit points and
    pixel footprints (metres)."""
    c = _TexCtx(scene, obj, face, p_local, footprint, noise)
    out = np.empty((obj.size, 3), dtype=np.float32)
    for kind in np.flatnonzero(np.bincount(c.kind, minlength=len(_TEXTURES))):
        i = np.flatnonzero(c.kind == kind)
        out[i] = _TEXTURES[int(kind)](c, i)
    return np.clip(out, 0.0, 1.0)
