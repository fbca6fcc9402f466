"""Synthetic scene generator: exact geometry, consistent modalities, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from joint_perception.data.synthetic import Camera, Scene, SyntheticScenes, render
from joint_perception.nyuv2_classes import ID40

H, W = 60, 80
K_SMALL = np.array([[60.0, 0.0, 39.5], [0.0, 60.0, 29.5], [0.0, 0.0, 1.0]])


def test_depth_and_normals_of_a_wall_straight_ahead():
    # Room 6 x 4 x 3 m, camera at x = 1.5 looking along +x: the wall x = 6 is 4.5 m away.
    # A fronto-parallel plane has the same optical-axis depth at every pixel that sees it.
    scene = Scene.empty_room((6.0, 4.0, 3.0))
    cam = Camera.look((1.5, 2.0, 1.5), yaw=0.0, K=K_SMALL)
    s = render(scene, cam, H, W)
    wall = s["labels"] == ID40["wall"]
    # pixels whose normal is -z see the wall x = 6 (the rest: side walls, floor, ceiling)
    front = np.abs(s["normals"][..., 2] + 1.0) < 1e-6
    assert front[H // 2, W // 2] and front.sum() > 0.3 * H * W
    assert np.all(wall[front])
    np.testing.assert_allclose(s["depth"][front], 4.5, rtol=1e-6)
    np.testing.assert_allclose(
        s["normals"][front], np.broadcast_to([0, 0, -1.0], (front.sum(), 3)), atol=1e-6
    )


def test_floor_normal_and_side_wall_in_camera_frame():
    scene = Scene.empty_room((6.0, 4.0, 3.0))
    cam = Camera.look((1.5, 2.0, 1.5), yaw=0.0, K=K_SMALL)
    s = render(scene, cam, H, W)
    floor = s["labels"] == ID40["floor"]
    ceiling = s["labels"] == ID40["ceiling"]
    assert floor[-1, 10:-10].all() and ceiling[0, 10:-10].all()
    # world up (+z) is camera -y for a level camera
    np.testing.assert_allclose(
        s["normals"][floor], np.broadcast_to([0, -1.0, 0], (floor.sum(), 3)), atol=1e-6
    )
    np.testing.assert_allclose(
        s["normals"][ceiling], np.broadcast_to([0, 1.0, 0], (ceiling.sum(), 3)), atol=1e-6
    )
    # bottom-centre pixel: floor is 1.5 m below, ray slope (59 - 29.5) / 60 -> depth = 1.5 / slope
    assert s["depth"][H - 1, W // 2] == pytest.approx(1.5 * 60.0 / (59 - 29.5), rel=1e-6)
    # left edge, middle row: the wall y = 4 (2 m to the left; camera x is world -y) faces +x
    assert s["labels"][H // 2, 0] == ID40["wall"]
    np.testing.assert_allclose(s["normals"][H // 2, 0], [1.0, 0.0, 0.0], atol=1e-6)
    assert s["depth"][H // 2, 0] == pytest.approx(2.0 * 60.0 / 39.5, rel=1e-6)


def test_box_in_front_of_camera_is_hit_exactly():
    scene = Scene.empty_room((6.0, 4.0, 3.0))
    # box whose near face is x = 3.0 (0.5 m half depth around x = 3.5), rotated 90 deg
    # (a square footprint, so the near face stays at x = 3.0)
    scene.add_box(
        (3.5, 2.0, 1.5), (0.5, 0.5, 0.5), math.pi / 2, ID40["cabinet"], scene.materials[0]
    )
    cam = Camera.look((1.0, 2.0, 1.5), yaw=0.0, K=K_SMALL)
    s = render(scene, cam, H, W)
    box = s["labels"] == ID40["cabinet"]
    assert box[H // 2, W // 2]
    # the face spans +-0.5 m at 2 m: +-15 px around the principal point
    assert 25 <= box[H // 2].sum() <= 33
    np.testing.assert_allclose(s["depth"][box], 2.0, rtol=1e-6)
    np.testing.assert_allclose(s["normals"][box][:, 2], -1.0, atol=1e-6)


def _back_project_world(sample, cam):
    h, w = sample["depth"].shape
    K = sample["K"]
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    z = sample["depth"].astype(np.float64)
    pc = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=-1)
    return pc @ cam.R.T + cam.position


def test_random_scene_modalities_are_consistent():
    from joint_perception.data.synthetic import SceneOptions, sample_scene

    rng = np.random.default_rng(7)
    opts = SceneOptions(pitch_deg=(-25.0, -20.0))  # look down so the floor is in view
    scene, cam = sample_scene(rng, 96, 128, opts)
    s = render(scene, cam, 96, 128, rng)
    assert s["rgb"].shape == (96, 128, 3) and s["rgb"].dtype == np.uint8
    assert s["depth"].dtype == np.float32 and s["labels"].dtype == np.uint8
    assert s["normals"].dtype == np.float32 and s["K"].dtype == np.float64
    assert s["has_labels"] and s["has_normals"]
    assert np.all(s["depth"] > 0) and np.all(np.isfinite(s["depth"]))
    assert s["labels"].min() >= 1 and s["labels"].max() <= 40  # closed room: no void
    np.testing.assert_allclose(np.linalg.norm(s["normals"], axis=-1), 1.0, atol=1e-5)
    # normals face the camera: n . ray < 0
    K = s["K"]
    u, v = np.meshgrid(np.arange(128), np.arange(96))
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1)
    assert np.all(np.sum(s["normals"] * rays, axis=-1) < 0)
    # back-projected floor pixels lie on the floor plane z_world = 0, ceiling on z = Lz,
    # and every point lies inside the room
    P = _back_project_world(s, cam)
    floor = s["labels"] == ID40["floor"]
    assert floor.sum() > 100
    np.testing.assert_allclose(P[floor][:, 2], 0.0, atol=1e-4)
    ceiling = s["labels"] == ID40["ceiling"]
    np.testing.assert_allclose(P[ceiling][:, 2], scene.size[2], atol=1e-4)
    assert np.all(P > -1e-4) and np.all(np.asarray(scene.size) + 1e-4 > P)
    # floor normals are world up, rotated into the camera frame
    up_cam = cam.R.T @ np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(
        s["normals"][floor], np.broadcast_to(up_cam, (floor.sum(), 3)), atol=1e-5
    )
    # the image is exposed: not black, not saturated
    assert 40 < s["rgb"].mean() < 215


def test_dataset_is_deterministic_per_seed_and_index():
    a = SyntheticScenes(3, 48, 64, seed=5)
    b = SyntheticScenes(3, 48, 64, seed=5)
    c = SyntheticScenes(3, 48, 64, seed=6)
    assert len(a) == 3
    x, y = a[1], b[1]
    for key in ("rgb", "depth", "labels", "normals", "K"):
        np.testing.assert_array_equal(x[key], y[key])
    np.testing.assert_array_equal(a[-1]["depth"], a[2]["depth"])
    assert not np.array_equal(a[1]["depth"], a[2]["depth"])
    assert not np.array_equal(a[1]["depth"], c[1]["depth"])
    with pytest.raises(IndexError):
        a[3]


def test_intrinsics_are_nyu_like_and_scaled():
    s = SyntheticScenes(1, 48, 64, seed=1)[0]
    K = s["K"]
    assert 518.8579 / 10 * 0.9 <= K[0, 0] <= 518.8579 / 10 * 1.1
    assert K[0, 0] / K[1, 1] == pytest.approx(518.8579 / 519.46961)
    assert K[0, 2] == pytest.approx((325.58245 + 0.5) / 10 - 0.5)


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="furnitures"):
        SyntheticScenes(1, furnitures=3)
    with pytest.raises(ValueError, match="image size"):
        SyntheticScenes(1, 0, 10)
    scene = Scene.empty_room((3.0, 3.0, 2.5))
    with pytest.raises(ValueError, match="not inside the room"):
        render(scene, Camera.look((4.0, 1.0, 1.0), 0.0, K=K_SMALL), H, W)
    with pytest.raises(ValueError, match="1..40"):
        scene.add_box((1, 1, 1), (0.1, 0.1, 0.1), 0.0, 41, scene.materials[0])
    with pytest.raises(ValueError, match="positive"):
        Scene.empty_room((3.0, 0.0, 2.5))


def test_save_preview_writes_small_png(tmp_path):
    import cv2

    from joint_perception.data.synthetic import save_preview

    out = save_preview(tmp_path / "p.png", n=2, height=48, width=64)
    img = cv2.imread(str(out))
    assert img.shape == (2 * 24, 4 * 32, 3)
