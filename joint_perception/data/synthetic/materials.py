"""The materials of a random scene: :class:`_Kit` (wood, fabric, paint, panels, screens,
paper, books ... each drawn from the appearance stream only) and the room's wall, floor and
ceiling materials by room type."""

from __future__ import annotations

import dataclasses

import numpy as np

from joint_perception.data.synthetic.color import _hsv_to_rgb
from joint_perception.data.synthetic.options import SceneOptions
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
    WOOD,
    Material,
    Scene,
)


def _rand_color(rng, h=(0.0, 1.0), s=(0.0, 1.0), v=(0.0, 1.0)) -> tuple[float, float, float]:
    rgb = _hsv_to_rgb(rng.uniform(*h), rng.uniform(*s), rng.uniform(*v))
    return tuple(float(x) for x in rgb)


def _darker(c, f) -> tuple[float, float, float]:
    return tuple(float(min(x * f, 1.0)) for x in c)


class _Kit:
    """Materials of one random scene, drawn from the appearance stream ``rng`` only (so that
    the ``textures`` and ``specular`` options never change the geometry); every method
    registers a material with the scene and returns its index."""

    def __init__(self, rng: np.random.Generator, scene: Scene | None, opts: SceneOptions):
        self.rng, self.scene = rng, scene
        self.rich = opts.textures == "rich"
        self.glossy = opts.specular
        self.night = opts.window_light  # windows may show a night sky

    def add(self, m: Material) -> int:
        return self.scene.add_material(m)

    def color(self, h=(0.0, 1.0), s=(0.0, 1.0), v=(0.0, 1.0)):
        return _rand_color(self.rng, h, s, v)

    def _gloss(self, lo: float, hi: float, shin=(20.0, 120.0)) -> dict:
        g, s = self.rng.uniform(lo, hi), self.rng.uniform(*shin)  # drawn whatever the option
        return {"gloss": g, "shininess": s} if self.glossy and hi > 0 else {}

    def wood_material(self, gloss=(0.0, 0.0), planks: bool = False) -> Material:
        rng, gl = self.rng, self._gloss(*gloss)
        if rng.random() < 0.4:  # laminate: white, grey, beige or black
            v = [(0.1, 0.2), (0.45, 0.6), (0.8, 0.95)][int(rng.integers(3))]
            c = self.color(s=(0.0, 0.08), v=v)
            return Material(c, _darker(c, 0.9), NOISE, 8.0, **gl)
        c = self.color(h=(0.04, 0.1), s=(0.25, 0.6), v=(0.2, 0.75))
        grain = (2 if planks else 1) if self.rich else 0
        return Material(c, _darker(c, 0.75), WOOD, rng.uniform(2.0, 6.0), pattern=grain, **gl)

    def wood(self, gloss=(0.0, 0.0)) -> int:
        return self.add(self.wood_material(gloss))

    def fabric_material(self, v=(0.25, 0.85), s=(0.1, 0.6)) -> Material:
        c = self.color(s=s, v=v)
        c2 = np.asarray(self.color(s=s, v=v))
        c2 = tuple(float(x) for x in 0.6 * np.asarray(c) * 0.8 + 0.4 * c2)  # a related shade
        pattern = int(self.rng.choice(3, p=[0.7, 0.15, 0.15]))
        threads = self.rng.uniform(60.0, 160.0)
        if not self.rich:
            return Material(c, _darker(c, 0.8), NOISE, threads / 6)
        return Material(c, c2, WEAVE, threads, pattern=pattern)

    def fabric(self, v=(0.25, 0.85), s=(0.1, 0.6)) -> int:
        return self.add(self.fabric_material(v, s))

    def plain(self, v=(0.7, 0.95), s=(0.0, 0.1), gloss=(0.0, 0.0), h=(0.0, 1.0)) -> int:
        c = self.color(h=h, s=s, v=v)
        return self.add(Material(c, _darker(c, 0.95), NOISE, 5.0, **self._gloss(*gloss)))

    def panel(self, base: int, layout: int, scale: float = 5.0) -> int:
        """Cabinet/drawer/door fronts with the colours of material ``base``."""
        m = self.scene.materials[base]
        handle = self.color(s=(0.0, 0.1), v=(0.05, 0.8))
        if not self.rich:
            return base
        grain = _GRAIN if m.kind == WOOD else 0
        return self.add(
            dataclasses.replace(
                m,
                kind=PANEL,
                pattern=layout | grain,
                color3=handle,
                scale=m.scale if grain else scale,
            )
        )

    def ceramic(self) -> int:
        return self.plain(v=(0.88, 0.98), s=(0.0, 0.03), gloss=(0.04, 0.1))

    def image(self, frame: int, emissive: float = 0.0, scale=(1.0, 3.0)) -> int:
        """Image-like content (pictures, posters, screens); ``frame``: 0 none, 1, 2 margin."""
        cols = [self.color(s=(0.1, 0.7), v=(0.15, 0.95)) for _ in range(3)]
        f = self.rng.uniform(*scale)
        style = int(self.rng.integers(4))
        if not self.rich:
            return self.add(Material(cols[0], cols[1], NOISE, 3.0, emissive=emissive))
        return self.add(Material(cols[0], cols[1], IMAGE, f, emissive, cols[2], frame | style << 2))

    def text(self, paper, ink, lines: float, sparse: bool = False) -> int:
        if not self.rich:
            return self.add(Material(paper, _darker(paper, 0.9), NOISE, 5.0))
        return self.add(Material(paper, ink, TEXT, lines, pattern=int(sparse)))

    def paper(self) -> int:
        white = self.rng.random() < 0.75
        paper = (
            self.color(s=(0.0, 0.05), v=(0.85, 0.98))
            if white
            else self.color(h=(0.1, 0.6), s=(0.2, 0.6), v=(0.8, 0.98))
        )
        ink = self.color(h=(0.55, 0.7), s=(0.0, 0.6), v=(0.05, 0.35))
        return self.text(paper, ink, self.rng.uniform(40.0, 140.0))

    def screen(self, on: bool) -> int:
        if on:
            return self.image(0, emissive=self.rng.uniform(0.5, 1.1), scale=(1.0, 2.5))
        return self.plain(v=(0.02, 0.08), s=(0.0, 0.05), gloss=(0.05, 0.1))

    def curtain(self) -> int:
        c = self.color(s=(0.1, 0.6), v=(0.3, 0.9))
        if not self.rich:
            return self.add(Material(c, _darker(c, 0.75), STRIPES, 6.0))
        return self.add(Material(c, _darker(c, 0.8), WEAVE, 120.0, pattern=3))

    def books(self) -> int:
        return self.add(Material((0.5, 0.5, 0.5), kind=BOOKS, scale=self.rng.uniform(20, 40)))

    def cardboard(self) -> int:
        c = self.color(h=(0.07, 0.1), s=(0.4, 0.6), v=(0.5, 0.75))
        return self.add(Material(c, _darker(c, 0.85), NOISE, 15.0))

    def colorful(self, gloss=(0.0, 0.0)) -> int:
        return self.plain(v=(0.15, 0.9), s=(0.2, 0.75), gloss=gloss)

    def shade(self, on: bool) -> int:
        c = self.color(h=(0.08, 0.14), s=(0.1, 0.4), v=(0.85, 1.0))
        return self.add(Material(c, kind=PLAIN, emissive=self.rng.uniform(0.8, 1.4) if on else 0.0))


def _mat_wall(k: _Kit, room_type: str) -> Material:
    """Painted walls (mostly off-white), some wallpaper or two-tone; the same number of
    draws whatever the texture option."""
    rng = k.rng
    tinted = rng.random() < 0.2
    c = k.color(
        s=(0.05, 0.22) if tinted else (0.0, 0.08), v=(0.65, 0.95) if tinted else (0.78, 0.97)
    )
    pattern = int(rng.choice(4, p=[0.6, 0.12, 0.1, 0.18]))
    if room_type in ("corridor", "open_office", "office", "bathroom", "kitchen"):
        pattern = 0 if pattern in (1, 2) else pattern
    c2 = k.color(s=(0.05, 0.3), v=(0.3, 0.85))
    if pattern in (1, 2):  # wallpaper: a lighter or darker shade of the base colour
        c2 = _darker(c, 0.8 + 0.1 * rng.random())
    trims = [(0.92, 0.92, 0.9), k.color(h=(0.05, 0.1), s=(0.3, 0.55), v=(0.25, 0.55)), (0.2,) * 3]
    trim = trims[int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
    scale = 1.0 / rng.uniform(0.08, 0.3)
    if not k.rich:
        return Material(c, _darker(c, 0.92), NOISE, 0.1 * scale + 2.0)
    return Material(c, c2, PAINT, scale, color3=tuple(trim), pattern=pattern)


def _mat_floor(k: _Kit, room_type: str) -> Material:
    """Tiles (kitchens, bathrooms), carpet (offices, bedrooms), wood or laminate."""
    rng = k.rng
    r, r2, r3 = rng.random(3)
    gl = k._gloss(0.03, 0.12, (30.0, 200.0))
    c = k.color(s=(0.0, 0.3), v=(0.1, 0.65))
    if room_type in ("kitchen", "bathroom") or r < 0.2:
        c = k.color(s=(0.0, 0.25), v=(0.35, 0.95))
        return Material(
            c, _darker(c, 0.7), TILES, 1.0 / (0.25 + 0.35 * r3), pattern=int(r2 < 0.3), **gl
        )
    if r > (0.35 if room_type in ("office", "open_office", "corridor", "bedroom") else 0.7):
        if k.rich:
            return Material(c, _darker(c, 0.75), CARPET, 50.0 + 70.0 * r3, pattern=int(r2 < 0.2))
        return Material(c, _darker(c, 0.8), NOISE, 20.0)
    return k.wood_material((0.03, 0.12), planks=True)


def _mat_ceiling(k: _Kit, room_type: str) -> Material:
    """Painted ceilings; drop ceilings (tiles between T-bars) in offices and corridors."""
    rng = k.rng
    c = k.color(s=(0.0, 0.05), v=(0.8, 0.97))
    bars = k.color(s=(0.0, 0.05), v=(0.55, 0.95))
    p_drop = {"office": 0.8, "open_office": 0.9, "corridor": 0.8, "kitchen": 0.3}.get(
        room_type, 0.05
    )
    if rng.random() < p_drop and k.rich:
        return Material(c, bars, GRID, 1.0 / 0.6)
    return Material(c, _darker(c, 0.95), NOISE, 5.0)
