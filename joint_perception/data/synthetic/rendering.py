"""One sample of a scene seen by a camera (:func:`render`): ray casting, textures, occlusion,
shading, exposure and the camera simulation, composed in that order.

Sample contract (docs/architecture.md): ``rgb`` HxWx3 uint8, ``depth`` HxW float32 metres
along the optical axis (z), ``labels`` HxW uint8 NYU-40 ids, ``normals`` HxWx3 float32 unit
vectors in the camera frame facing the camera, ``K`` 3x3 float64, ``has_labels`` and
``has_normals`` True.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from joint_perception.data.synthetic.camera import Camera
from joint_perception.data.synthetic.effects import CameraEffects, _jpeg, apply_camera_effects
from joint_perception.data.synthetic.noise import _Noise
from joint_perception.data.synthetic.occlusion import _occlusion
from joint_perception.data.synthetic.raycast import _trace
from joint_perception.data.synthetic.scene import Scene
from joint_perception.data.synthetic.shading import _expose, _shade
from joint_perception.data.synthetic.textures import _albedo


def render(
    scene: Scene,
    cam: Camera,
    height: int,
    width: int,
    rng: np.random.Generator | None = None,
    noise: float = 0.0,
    blur: float = 0.0,
    *,
    shadows: bool = False,
    effects: CameraEffects | None = None,
) -> dict[str, Any]:
    """Render one sample of ``scene`` seen by ``cam`` at ``height`` x ``width`` pixels.

    Geometry outputs are exact (no anti-aliasing) and depend only on ``scene``, ``cam`` and
    the size. ``rng`` drives the texture noise and sensor noise (a fixed default is used when
    ``None``). ``shadows`` casts soft shadows of the furniture; ``effects`` images the
    radiance through a simulated camera (:func:`apply_camera_effects`, then JPEG), otherwise
    a plain gamma is applied. ``blur`` (Gaussian sigma, pixels) and ``noise`` (additive std,
    sRGB units) are applied to the sRGB image last, before quantisation.

    Returns:
        dict with ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres (z), ``labels``
        (H, W) uint8 NYU-40, ``normals`` (H, W, 3) float32 unit camera-frame normals facing
        the camera, ``K`` (3, 3) float64, ``has_labels`` and ``has_normals`` True.

    Raises:
        ValueError: for a non-positive image size or a camera outside the room.
    """
    import cv2

    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    rng = np.random.default_rng(0) if rng is None else rng
    hits = _trace(scene, cam, height, width)
    albedo = _albedo(scene, hits.of, hits.ff, hits.p_local, hits.footprint, _Noise(rng))
    albedo_lin = cv2.pow(albedo, 2.2)  # much faster than numpy's power
    ao, vis = _occlusion(scene, hits, height, width, shadows)
    lin = _shade(scene, hits, albedo_lin, ao, vis)
    emis = np.array([m.emissive for m in scene.materials], dtype=np.float32)[
        np.asarray(scene.material_ids)[hits.of]
    ]
    img = _expose(lin, albedo_lin, emis, height, width)
    if effects is None:
        img = cv2.pow(np.clip(img, 0.0, 1.0), 1.0 / 2.2)
    else:
        img = apply_camera_effects(img, effects, rng)
    if blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    if noise > 0:
        img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
    rgb = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if effects is not None and effects.jpeg_quality > 0:
        rgb = _jpeg(rgb, effects.jpeg_quality)
    return {
        "rgb": rgb,
        "depth": hits.t.astype(np.float32),
        "labels": np.asarray(scene.labels, dtype=np.uint8)[hits.obj],
        "normals": np.ascontiguousarray(hits.normals, dtype=np.float32),
        "K": np.array(cam.K, dtype=np.float64),
        "has_labels": True,
        "has_normals": True,
    }
