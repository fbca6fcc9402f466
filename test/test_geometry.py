"""geometry: intrinsics validation/scaling, rays, back-projection and normals (REP 103)."""

import cv2
import numpy as np
import pytest

from joint_perception.geometry import (
    backproject,
    normals_from_depth,
    orient_towards_camera,
    pixel_rays,
    scale_intrinsics,
    scale_projection,
    validate_intrinsics,
)

K = np.array([[500.0, 0.0, 3.0], [0.0, 400.0, 2.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((3, 3)), "all zeros"),
        ([[500, 0, 3], [0, np.nan, 2], [0, 0, 1]], "non-finite"),
        ([[-5, 0, 3], [0, 400, 2], [0, 0, 1]], "fx > 0"),
        ([[500, 0, 3], [0, 0, 2], [0, 0, 1]], "fy > 0"),
        ([[500, 0, 3], [0, 400, 2], [0, 0, 2]], r"\[0, 0, 1\]"),
        (np.eye(2), "9 entries"),
    ],
)
def test_validate_intrinsics_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_intrinsics(bad)


def test_validate_intrinsics_accepts_flat_camera_info_k():
    out = validate_intrinsics(K.reshape(-1).tolist())
    assert out.shape == (3, 3) and out.dtype == np.float64 and np.array_equal(out, K)


def test_scale_intrinsics_hand_values():
    # 480x640 -> 240x320 (s = 0.5): cx' = (cx + 0.5) * 0.5 - 0.5
    K0 = np.array([[518.8579, 0, 325.58245], [0, 519.46961, 253.73617], [0, 0, 1]])
    K1 = scale_intrinsics(K0, (480, 640), (240, 320))
    assert K1[0, 0] == pytest.approx(259.42895)
    assert K1[1, 1] == pytest.approx(259.734805)
    assert K1[0, 2] == pytest.approx((325.58245 + 0.5) * 0.5 - 0.5)  # 162.541225
    assert K1[1, 2] == pytest.approx(126.618085)
    assert np.array_equal(K1[2], [0, 0, 1])
    # anisotropic: width x2, height x1
    K2 = scale_intrinsics(K, (4, 6), (4, 12))
    assert np.allclose(K2, [[1000, 0, 6.5], [0, 400, 2], [0, 0, 1]])
    # round trip
    assert np.allclose(scale_intrinsics(K1, (240, 320), (480, 640)), K0)


def test_scale_intrinsics_matches_cv2_resize_sampling():
    # the centroid of a blob at (u0, v0) lands, after cv2.resize, where the same map as
    # cx/cy predicts: u' = (u0 + 0.5) * s - 0.5 (box filtering preserves first moments)
    u0, v0 = 40.3, 20.7
    yy, xx = np.mgrid[0:64, 0:96]
    img = np.exp(-((xx - u0) ** 2 + (yy - v0) ** 2) / (2 * 3.0**2)).astype(np.float32)
    small = cv2.resize(img, (48, 32), interpolation=cv2.INTER_AREA)
    ys, xs = np.mgrid[0:32, 0:48]
    u_new = (xs * small).sum() / small.sum()
    v_new = (ys * small).sum() / small.sum()
    K0 = np.array([[100.0, 0, u0], [0, 100.0, v0], [0, 0, 1]])
    K1 = scale_intrinsics(K0, (64, 96), (32, 48))
    assert u_new == pytest.approx(K1[0, 2], abs=1e-3)
    assert v_new == pytest.approx(K1[1, 2], abs=1e-3)
    assert K1[0, 2] == pytest.approx(19.9)


def test_scale_projection_scales_tx():
    P = np.array([[500.0, 0, 3, -50.0], [0, 400.0, 2, 0], [0, 0, 1, 0]])
    P1 = scale_projection(P, (4, 6), (8, 12))
    assert np.allclose(P1, [[1000, 0, 6.5, -100], [0, 800, 4.5, 0], [0, 0, 1, 0]])
    with pytest.raises(ValueError, match="12 finite"):
        scale_projection(np.zeros((3, 3)), (4, 6), (8, 12))
    with pytest.raises(ValueError, match="positive"):
        scale_projection(P, (0, 6), (8, 12))


def test_pixel_rays_hand_values_and_cache():
    r = pixel_rays(K, 4, 6)
    assert r.shape == (4, 6, 3) and r.dtype == np.float32
    assert np.allclose(r[2, 3], [0, 0, 1])  # principal point (cx=3, cy=2)
    assert np.allclose(r[0, 5], [(5 - 3) / 500, (0 - 2) / 400, 1])
    assert pixel_rays(K, 4, 6) is r  # cached
    with pytest.raises(ValueError):
        r[0, 0, 0] = 1.0  # shared cache is read-only
    skewed = K.copy()
    skewed[0, 1] = 10.0
    rs = pixel_rays(skewed, 4, 6)
    # K @ ray must give back the pixel
    uv = np.einsum("ij,hwj->hwi", skewed, rs.astype(np.float64))
    assert np.allclose(uv[1, 4], [4, 1, 1])


def test_backproject_hand_values_and_invalid():
    depth = np.full((4, 6), 2.0, np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = np.nan, 0.0, -1.0, np.inf
    P = backproject(depth, K)
    assert P.dtype == np.float32 and P.shape == (4, 6, 3)
    assert np.allclose(P[3, 5], [2 * (5 - 3) / 500, 2 * (3 - 2) / 400, 2.0])
    assert np.allclose(P[2, 3], [0, 0, 2])
    assert np.isnan(P[0, :4]).all()
    assert not np.isnan(P[1:]).any()
    # projecting back gives the pixel
    uvw = P[3, 5].astype(np.float64) @ K.T
    assert np.allclose(uvw[:2] / uvw[2], [5, 3])
    with pytest.raises(ValueError, match="float metres"):
        backproject(np.zeros((4, 6), np.uint16), K)


def test_normals_of_synthetic_plane():
    # plane n . X = d with n = (0.3, -0.4, -0.866) (facing the camera), rendered exactly
    h, w = 40, 60
    Kp = np.array([[50.0, 0, 29.5], [0, 50.0, 19.5], [0, 0, 1]])
    n = np.array([0.3, -0.4, -np.sqrt(1 - 0.25)])
    d = -3.0
    rays = pixel_rays(Kp, h, w).astype(np.float64)
    depth = (d / (rays @ n)).astype(np.float32)  # z of the ray hitting the plane
    assert (depth > 0).all()
    N = normals_from_depth(depth, Kp)
    inner = N[1:-1, 1:-1].reshape(-1, 3)
    assert np.allclose(inner, n, atol=1e-4)
    assert np.isnan(N[0]).all() and np.isnan(N[:, -1]).all()  # border
    # a hole invalidates the pixel and its 4 neighbours
    depth[10, 10] = np.nan
    N = normals_from_depth(depth, Kp)
    assert np.isnan(N[10, 10]).all() and np.isnan(N[9, 10]).all() and np.isnan(N[10, 11]).all()
    assert not np.isnan(N[9, 9]).any()


def test_fronto_parallel_wall_faces_camera():
    N = normals_from_depth(np.full((5, 5), 1.5, np.float32), K)
    assert np.allclose(N[2, 2], [0, 0, -1])


def test_orient_towards_camera_flips_only_backfacing():
    rays = np.array([[[0, 0, 1], [0.5, 0, 1], [0, 0, 1]]], np.float32)
    nrm = np.array([[[0, 0, 1], [-1, 0, 0.1], [np.nan] * 3]], np.float32)
    out = orient_towards_camera(nrm, rays)
    assert out is nrm
    assert np.allclose(nrm[0, 0], [0, 0, -1])  # flipped
    assert np.allclose(nrm[0, 1], [-1, 0, 0.1])  # dot = -0.4: kept
    assert np.isnan(nrm[0, 2]).all()
    with pytest.raises(ValueError, match="must both be"):
        orient_towards_camera(nrm, rays[:, :2])


def test_real_nyu_depth_backprojects_to_plausible_room(shared_data):
    depth = cv2.imread(str(shared_data / "nyuv2_test/depth_mm/0001.png"), cv2.IMREAD_UNCHANGED)
    depth_m = depth.astype(np.float32) / 1000.0
    Knyu = np.array([[518.8579, 0, 325.58245], [0, 519.46961, 253.73617], [0, 0, 1]])
    P = backproject(depth_m, Knyu)
    valid = ~np.isnan(P[..., 2])
    assert valid.mean() > 0.9
    assert np.allclose(P[..., 2][valid], depth_m[valid])
    N = normals_from_depth(depth_m, Knyu)
    good = ~np.isnan(N[..., 0])
    assert good.mean() > 0.8
    assert np.allclose(np.linalg.norm(N[good], axis=1), 1, atol=1e-4)
    assert (np.einsum("ij,ij->i", N[good], pixel_rays(Knyu, 480, 640)[good]) <= 0).all()
