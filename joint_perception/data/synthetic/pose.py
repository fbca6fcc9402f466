"""Where the camera of a random scene stands and looks: held by a person or a robot, clear of
the furniture, sometimes just in front of a wall (:func:`_camera_spot`), aimed at the
furniture with a slightly downward pitch (:func:`_aim_camera`); blank close-ups are detected
for re-aiming (:func:`_view_is_informative`)."""

from __future__ import annotations

import math

import numpy as np

from joint_perception.data.synthetic.camera import Camera
from joint_perception.data.synthetic.options import SceneOptions
from joint_perception.data.synthetic.placement import _Builder, _wall_frame
from joint_perception.data.synthetic.raycast import cast_rays
from joint_perception.data.synthetic.scene import Scene


def _camera_spot(r, size, opts: SceneOptions):
    """Camera (xy, height, facing): ``facing`` is the heading into the room for a camera
    standing in front of a wall, else None."""
    Lx, Ly, Lz = size
    u = r.random(4)
    hi = min(opts.camera_height[1], Lz - 0.35)
    lo = min(opts.camera_height[0], hi)
    z = r.triangular(lo, min(max(1.45, lo), hi), hi) if hi > lo else lo
    if u[0] < opts.near_wall:
        w = int(u[1] * 4)
        origin, along, inward, length = _wall_frame(size, w)
        depth = Ly if w % 2 == 0 else Lx
        a = 0.4 + u[2] * (length - 0.8)
        xy = origin + a * along + (0.35 + u[3] * (min(0.9, depth / 2) - 0.35)) * inward
        return xy, z, math.atan2(inward[1], inward[0])
    span = [0.5 + t * (L - 1.0) if L > 1.0 else L / 2 for t, L in ((u[2], Lx), (u[3], Ly))]
    return np.array(span), z, None


def _aim_camera(r, b: _Builder, spot, opts: SceneOptions, K) -> Camera:
    """Look at the furnished part of the room (like a person taking a photo), with jitter;
    pitch mostly a little downwards."""
    xy, z, facing = spot
    u, n = r.random(3), r.standard_normal(2)
    targets = [np.array([(f[0] + f[2]) / 2, (f[1] + f[3]) / 2]) for f in b.footprints]
    if facing is not None:

        def off(t):
            return abs(
                (math.atan2(t[1] - xy[1], t[0] - xy[0]) - facing + math.pi) % (2 * math.pi)
                - math.pi
            )

        targets = [t for t in targets if off(t) < math.radians(80)]
    if targets and u[0] < 0.85:
        to = targets[int(u[1] * len(targets))] - xy
        yaw = math.atan2(to[1], to[0]) + math.radians(15.0) * n[0]
    elif facing is not None:
        yaw = facing + math.radians(30.0) * n[0]
    else:
        yaw = 2 * math.pi * u[1]
    lo, hi = opts.pitch_deg
    mode = float(np.clip(-2.0 if z > 0.8 else 3.0, lo, hi))
    pitch = r.triangular(lo, mode, hi) if hi > lo else lo
    roll = opts.roll_deg[0] + u[2] * (opts.roll_deg[1] - opts.roll_deg[0])
    return Camera.look((xy[0], xy[1], z), yaw, math.radians(pitch), math.radians(roll), K)


def _view_is_informative(scene: Scene, cam: Camera, height: int, width: int) -> bool:
    """False for a view (cast at 12 x 16 rays) with median depth under 1.2 m or one object
    filling 70 % of it: people rarely photograph a blank wall from up close."""
    s = 16.0 / width
    K = cam.K * np.array([[s, s, 1.0], [s, s, 1.0], [1.0, 1.0, 1.0]])
    K[0, 2], K[1, 2] = (cam.K[0, 2] + 0.5) * s - 0.5, (cam.K[1, 2] + 0.5) * s - 0.5
    h = max(int(round(height * s)), 4)
    t, obj, _, _ = cast_rays(scene, Camera(K, cam.R, cam.position), h, 16)
    return float(np.median(t)) > 1.2 and np.bincount(obj.reshape(-1)).max() < 0.7 * obj.size
