"""Geometric consistency of the joint transforms (joint_perception.data.transforms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from joint_perception.data import transforms as T
from joint_perception.geometry import backproject


def _sample(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    K = np.array([[30.0, 0, 15.2], [0, 30.0, 11.7], [0, 0, 1]])
    u = np.arange(w)[None, :].repeat(h, 0)
    depth = (2.0 + 0.05 * u + 0.02 * np.arange(h)[:, None]).astype(np.float32)
    depth[0, 0] = 0.0
    normals = rng.normal(size=(h, w, 3)).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    labels = rng.integers(0, 5, size=(h, w))
    rgb = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    return T.make_sample(rgb, K, depth, labels, normals, name="t")


def test_make_sample_defaults_and_errors():
    s = T.make_sample(np.zeros((4, 5, 3), np.uint8), np.eye(3), depth=np.full((4, 5), np.nan))
    assert not s["has_labels"] and not s["has_normals"]
    assert s["depth"].dtype == np.float32 and (s["depth"] == 0).all()
    with pytest.raises(ValueError, match="depth shape"):
        T.make_sample(np.zeros((4, 5, 3), np.uint8), np.eye(3), depth=np.ones((5, 4)))


def test_crop_keeps_backprojected_points():
    s = _sample()
    c = T.crop(s, 3, 5, 12, 16)
    p0 = backproject(s["depth"], s["K"])[3:15, 5:21]
    p1 = backproject(c["depth"], c["K"])
    np.testing.assert_allclose(p1[1:], p0[1:], rtol=1e-6)
    assert c["K"][0, 2] == pytest.approx(15.2 - 5) and c["K"][1, 2] == pytest.approx(11.7 - 3)
    with pytest.raises(ValueError, match="leaves"):
        T.crop(s, 20, 0, 12, 16)


def test_flip_twice_identity_and_geometry():
    s = _sample()
    f = T.hflip(s)
    ff = T.hflip(f)
    for k in ("rgb", "depth", "labels", "normals", "K"):
        np.testing.assert_array_equal(ff[k], s[k])
    assert f["K"][0, 2] == pytest.approx(32 - 1 - 15.2)
    np.testing.assert_array_equal(f["normals"][:, :, 0], -s["normals"][:, ::-1, 0])
    # the mirrored cloud is the original with x negated
    p0 = backproject(s["depth"], s["K"])[:, ::-1]
    p1 = backproject(f["depth"], f["K"])
    np.testing.assert_allclose(p1[..., 0], -p0[..., 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p1[..., 2], p0[..., 2])


def test_scale_closer_shrinks_cloud_and_zoom_keeps_depth():
    s = _sample()
    out = T.RandomScale(2.0, 2.0, "closer").apply(s, 2.0)
    assert out["rgb"].shape == (48, 64, 3)
    assert out["K"][0, 0] == pytest.approx(60.0)
    # pixel (v, u) of the original is at (2v + 0.5, 2u + 0.5); nearest resampling picks (2v+1, 2u+1)
    z0 = s["depth"][5, 7]
    assert out["depth"][11, 15] == pytest.approx(z0 / 2.0)
    p0 = backproject(s["depth"], s["K"])[5, 7]
    p1 = backproject(out["depth"], out["K"])[10:12, 14:16].reshape(-1, 3)
    # the cloud shrinks by 1/s (up to the half-pixel sampling offset)
    assert np.allclose(p1.mean(0), p0 / 2.0, rtol=0.02)
    zoom = T.RandomScale(2.0, 2.0, "zoom").apply(s, 2.0)
    assert zoom["depth"][11, 15] == pytest.approx(z0)


def test_rotation_rotates_normals_and_keeps_depth():
    s = _sample()
    s["normals"][:] = np.array([1.0, 0.0, 0.0], np.float32)
    r = T.rotate(s, 90.0)
    K = s["K"]
    # a pixel 4 px right of the principal point lands 4 px above it (counter-clockwise on screen)
    cy, cx = 11.7, 15.2
    assert np.allclose(r["normals"][int(round(cy)), int(round(cx))], [0.0, -1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(r["K"], K)
    zero = T.rotate(s, 0.0)
    np.testing.assert_array_equal(zero["depth"], s["depth"])
    np.testing.assert_allclose(
        np.linalg.norm(r["normals"], axis=-1)[r["depth"] > 0], 1.0, rtol=1e-5
    )


def test_color_jitter_only_touches_rgb():
    s = _sample()
    j = T.ColorJitter(0.5, 0.5, 0.5)(s, np.random.default_rng(1))
    assert not np.array_equal(j["rgb"], s["rgb"])
    for k in ("depth", "labels", "normals", "K"):
        np.testing.assert_array_equal(j[k], s[k])


def test_resize_and_canonical_focal():
    s = _sample()
    r = T.Resize(12, 16)(s)
    assert r["K"][0, 0] == pytest.approx(15.0)
    assert r["K"][0, 2] == pytest.approx((15.2 + 0.5) * 0.5 - 0.5)
    c = T.CanonicalFocal(30.0)(r)
    assert c["focal_scale"] == pytest.approx(2.0)
    np.testing.assert_allclose(c["depth"], r["depth"] * 2.0)
    # the runtime rule depth * fx_net / f_c recovers metric depth
    np.testing.assert_allclose(c["depth"] * r["K"][0, 0] / 30.0, r["depth"], rtol=1e-6)


def test_pipeline_to_tensor_and_reproducible():
    s = _sample()
    tr = T.build_transforms((16, 20), train=True, rotation=3.0)
    a = tr(s, np.random.default_rng(5))
    b = tr(s, np.random.default_rng(5))
    assert a["image"].shape == (3, 16, 20) and a["image"].dtype == torch.float32
    assert a["depth"].shape == (1, 16, 20) and a["labels"].dtype == torch.int64
    assert a["normals"].shape == (3, 16, 20) and a["K"].shape == (3, 3)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["K"], b["K"])
    ev = T.build_transforms((12, 16), train=False)(s)
    assert ev["image"].shape == (3, 12, 16)
    with pytest.raises(ValueError, match="scale range"):
        T.build_transforms((12, 16), train=True, scale=(0.5, 1.0))


def test_transformed_differs_between_epochs_and_is_reproducible():
    s = _sample()
    ds = T.Transformed([s, s], T.Compose([T.ColorJitter(0.5, 0.5, 0.5), T.ToTensor()]))
    torch.manual_seed(0)
    first = ds[0]["image"]
    second = ds[0]["image"]  # the same item in a later epoch
    assert not torch.equal(first, second)
    torch.manual_seed(0)
    assert torch.equal(ds[0]["image"], first)
