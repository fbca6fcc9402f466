"""The pinhole camera (:class:`Camera`: intrinsics, camera-to-world rotation, optical centre)
and the random intrinsics of a synthetic image (:func:`sample_intrinsics`).

Camera frame: REP 103 optical (x right, y down, z forward); ``Camera.R`` maps camera-frame
vectors to the world, ``Camera.position`` is the optical centre in the world (metres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from joint_perception.data.synthetic.options import SceneOptions
from joint_perception.nyuv2_classes import NYU_K, NYU_SIZE


@dataclass
class Camera:
    """Pinhole camera: ``K`` 3x3 (pixels), ``R`` 3x3 camera-to-world rotation, ``position``
    (3,) optical centre in the world (metres). The camera frame is REP 103 optical."""

    K: np.ndarray
    R: np.ndarray
    position: np.ndarray

    @classmethod
    def look(
        cls,
        position,
        yaw: float,
        pitch: float = 0.0,
        roll: float = 0.0,
        K: np.ndarray | None = None,
    ) -> Camera:
        """Camera at world ``position`` looking along world heading ``yaw`` (radians, 0 = +x,
        counter-clockwise seen from above), ``pitch`` up-positive, ``roll`` about the optical
        axis (radians). ``K`` defaults to ``NYU_K``."""
        c, s = math.cos(yaw), math.sin(yaw)
        Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        # optical frame at yaw = 0: x right = -y_world, y down = -z_world, z forward = +x_world
        R0 = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        cp, sp = math.cos(pitch), math.sin(pitch)
        Rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
        cr, sr = math.cos(roll), math.sin(roll)
        Rr = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
        K = NYU_K.copy() if K is None else np.asarray(K, dtype=np.float64)
        return cls(K=K, R=Rz @ R0 @ Rx @ Rr, position=np.asarray(position, dtype=np.float64))


def sample_intrinsics(
    rng: np.random.Generator, height: int, width: int, options: SceneOptions
) -> np.ndarray:
    """Intrinsics (3, 3) float64 of a random camera imaged at ``height`` x ``width``.

    ``"varied"``: ``fx / W`` uniform in ``focal_range``; a native aspect ratio ``a`` from
    ``aspect_ratios`` gives ``fy = fx * a * H / W`` (a 16:9 sensor resized to 4:3 has
    ``fy = 4/3 fx``); the principal point is jittered by ``principal_jitter`` x (W, H)
    around the image centre. ``"nyu"``: NYUv2's intrinsics scaled to the image, the focal
    length jittered by ``focal_jitter``.
    """
    o = options
    r = rng.random(4)
    if o.intrinsics == "nyu":
        sy, sx = height / NYU_SIZE[0], width / NYU_SIZE[1]
        f = 1.0 + (2 * r[0] - 1) * o.focal_jitter
        return np.array(
            [
                [NYU_K[0, 0] * sx * f, 0.0, (NYU_K[0, 2] + 0.5) * sx - 0.5],
                [0.0, NYU_K[1, 1] * sy * f, (NYU_K[1, 2] + 0.5) * sy - 0.5],
                [0.0, 0.0, 1.0],
            ]
        )
    fx = (o.focal_range[0] + r[0] * (o.focal_range[1] - o.focal_range[0])) * width
    aspect = o.aspect_ratios[int(r[1] * len(o.aspect_ratios))]
    fy = fx * aspect * height / width
    cx = (width - 1) / 2 + (2 * r[2] - 1) * o.principal_jitter * width
    cy = (height - 1) / 2 + (2 * r[3] - 1) * o.principal_jitter * height
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
