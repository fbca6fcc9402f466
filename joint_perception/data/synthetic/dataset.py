"""Random samples: one rendered random scene (:func:`render_scene`) and the map-style data
set :class:`SyntheticScenes` whose item ``i`` depends only on (seed, i)."""

from __future__ import annotations

from typing import Any

import numpy as np

from joint_perception.data.synthetic.effects import draw_camera_effects
from joint_perception.data.synthetic.options import SceneOptions
from joint_perception.data.synthetic.rendering import render
from joint_perception.data.synthetic.rooms import sample_scene
from joint_perception.data.synthetic.shading import _illuminant


def render_scene(
    rng: np.random.Generator, height: int, width: int, options: SceneOptions | None = None
) -> dict[str, Any]:
    """Random scene and camera (:func:`sample_scene`) rendered at ``height`` x ``width``,
    with the camera simulation of :func:`draw_camera_effects` (or, with
    ``camera_effects=False``, a plain gamma, ``blur`` and additive ``noise``).

    Returns the sample dict of :func:`render` (rgb, depth, labels, normals, K, has_*).
    """
    opts = options or SceneOptions()
    scene, cam = sample_scene(rng, height, width, opts)
    if not opts.camera_effects:
        return render(scene, cam, height, width, rng, opts.noise, opts.blur, shadows=opts.shadows)
    fx_rng = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))
    effects = draw_camera_effects(fx_rng, opts, width, _illuminant(scene))
    return render(scene, cam, height, width, rng, shadows=opts.shadows, effects=effects)


class SyntheticScenes:
    """Map-style data set of procedural indoor scenes; item ``i`` depends only on (seed, i).

    Args:
        length: number of items.
        height, width: image size in pixels.
        seed: base seed; item ``i`` uses ``np.random.default_rng([seed, i])``.
        **options: fields of :class:`SceneOptions` (e.g. ``noise=0``, ``furniture=(2, 4)``).

    Raises:
        ValueError: for a negative length or non-positive size; TypeError for unknown options.
    """

    def __init__(self, length: int, height: int = 240, width: int = 320, seed: int = 0, **options):
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        self.length, self.height, self.width, self.seed = (
            int(length),
            int(height),
            int(width),
            int(seed),
        )
        self.options = SceneOptions.from_kwargs(**options)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for SyntheticScenes of length {self.length}")
        i = i % self.length
        rng = np.random.default_rng([self.seed, i])
        return render_scene(rng, self.height, self.width, self.options)
