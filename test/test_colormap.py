"""colormap: VOC palette values, label/depth/normal colouring, overlay."""

import numpy as np
import pytest

from joint_perception.colormap import (
    colorize_depth,
    colorize_labels,
    label_palette,
    normals_to_rgb,
    overlay,
    palette_from_metadata,
)


def test_voc_palette_known_entries():
    pal = label_palette(40)
    assert pal.shape == (41, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]
    assert pal[1].tolist() == [128, 0, 0]
    assert pal[2].tolist() == [0, 128, 0]
    assert pal[4].tolist() == [0, 0, 128]
    assert pal[15].tolist() == [192, 128, 128]  # VOC "person"
    assert len({tuple(c) for c in pal.tolist()}) == 41  # all distinct
    assert np.array_equal(label_palette(40), pal)  # deterministic
    assert label_palette(300).shape == (301, 3)
    with pytest.raises(ValueError):
        label_palette(-1)


def test_palette_from_metadata_prefers_model_colours():
    cols = [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    assert palette_from_metadata(cols, 2).tolist() == cols
    assert np.array_equal(palette_from_metadata([], 2), label_palette(2))


def test_colorize_labels():
    pal = label_palette(3)
    out = colorize_labels(np.array([[0, 1], [3, 2]], np.uint8), pal)
    assert out.tolist() == [[[0, 0, 0], [128, 0, 0]], [[128, 128, 0], [0, 128, 0]]]
    # the uint8 (cv2.LUT) and generic (np.take) paths agree
    many = np.random.default_rng(0).integers(0, 41, (30, 20), dtype=np.uint8)
    pal40 = label_palette(40)
    assert np.array_equal(
        colorize_labels(many, pal40), colorize_labels(many.astype(np.int32), pal40)
    )
    with pytest.raises(ValueError, match="label values 0..4 outside the palette of 4"):
        colorize_labels(np.array([[0, 4]], np.uint8), pal)


def test_colorize_depth_ends_and_nan():
    d = np.array([[1.0, 5.0, np.nan, 0.2, 99.0]], np.float32)
    out = colorize_depth(d, 1.0, 5.0)
    assert out[0, 2].tolist() == [0, 0, 0]
    assert out[0, 0].tolist() == out[0, 3].tolist()  # clipped to min
    assert out[0, 1].tolist() == out[0, 4].tolist()  # clipped to max
    # turbo: near end is dark blue/purple, far end dark red
    assert out[0, 0, 2] > out[0, 0, 0] and out[0, 1, 0] > out[0, 1, 2]
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        colorize_depth(d, 2.0, 2.0)


def test_normals_to_rgb_matches_nyu_convention():
    n = np.array([[[0, 0, -1], [1, 0, 0], [np.nan, 0, 0]]], np.float32)
    out = normals_to_rgb(n)
    assert out.tolist() == [[[128, 128, 0], [255, 128, 128], [0, 0, 0]]]
    back = out[0, :2].astype(np.float32) / 127.5 - 1  # the data set's inverse
    assert np.allclose(back, n[0, :2], atol=0.01)


def test_overlay():
    a = np.full((1, 1, 3), 100, np.uint8)
    b = np.full((1, 1, 3), 200, np.uint8)
    assert overlay(a, b, 0.25).tolist() == [[[125, 125, 125]]]
    with pytest.raises(ValueError, match="alpha"):
        overlay(a, b, 1.5)


def test_normals_to_rgb_into_buffers_is_the_same_bytes():
    """``round((n + 1) / 2 * 255)`` (half to even), clipped to [0, 255], a pixel with a NaN
    component black; the reused-buffer form (the node's) gives the bytes of the allocating one,
    NaN, infinite, half-way and out-of-range components included."""
    import numpy as np

    from joint_perception.colormap import normals_to_rgb

    rng = np.random.default_rng(3)
    n = rng.normal(size=(48, 64, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    n[1, 2, 0], n[3, 4], n[5, 6, 1], n[7, 8, 2] = np.nan, np.nan, np.inf, -np.inf
    # every half-way value (k + 0.5 rounds to even) and components a little outside [-1, 1]
    n[10:13].reshape(-1)[:255] = (np.arange(255, dtype=np.float32) + 0.5) / 127.5 - 1
    n[13, :3] = [[-1.0001, 1.0001, -2.0], [2.0, -1.0, 1.0], [-1e-7 - 1, 0.0, 0.0]]
    out, scratch = np.empty(n.shape, np.uint8), np.empty(n.shape, np.float32)
    ref = np.rint(np.clip((n + 1.0) * 127.5, 0, 255))
    ref[np.isnan(ref).any(axis=2)] = 0
    assert normals_to_rgb(n, out=out, scratch=scratch) is out
    np.testing.assert_array_equal(out, ref.astype(np.uint8))
    np.testing.assert_array_equal(normals_to_rgb(n), out)
