"""NYUv2 class tables against the shared reference JSON and hand-checked values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from joint_perception.nyuv2_classes import (
    ID13,
    ID40,
    MAP40_TO_13,
    NAMES13,
    NAMES40,
    NYU_K,
    NYU_SIZE,
    labels40_to_13,
    scaled_nyu_k,
)


def test_tables_shapes_and_known_entries():
    assert len(NAMES40) == 40 and NAMES40[0] == "wall" and NAMES40[-1] == "otherprop"
    assert len(NAMES13) == 13 and NAMES13[0] == "bed" and NAMES13[-1] == "window"
    assert MAP40_TO_13.shape == (41,) and MAP40_TO_13[0] == 0
    assert ID40["chair"] == 5 and ID40["ceiling"] == 22 and ID40["lamp"] == 35
    # chair -> chair, ceiling -> ceiling, television -> tv, door -> wall, blinds -> window
    assert MAP40_TO_13[ID40["chair"]] == ID13["chair"] == 4
    assert MAP40_TO_13[ID40["television"]] == ID13["tv"]
    assert MAP40_TO_13[ID40["door"]] == ID13["wall"]
    assert MAP40_TO_13[ID40["blinds"]] == ID13["window"]
    assert set(MAP40_TO_13[1:].tolist()) == set(range(1, 14))


def test_tables_equal_shared_json(shared_data):
    ref = json.loads((shared_data / "nyuv2_classes.json").read_text())
    assert list(NAMES40) == ref["names40"]
    assert list(NAMES13) == ref["names13"]
    ref_map = list(ref["map40_to_13"])
    if len(ref_map) == 40:  # the JSON stores classes 1..40 only
        ref_map = [0] + ref_map
    assert MAP40_TO_13.tolist() == ref_map


def test_label13_files_equal_mapped_label40(shared_data):
    import cv2

    l40 = cv2.imread(str(shared_data / "nyuv2_test/label40/0001.png"), cv2.IMREAD_UNCHANGED)
    l13 = cv2.imread(str(shared_data / "nyuv2_test/label13/0001.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(labels40_to_13(l40), l13)


def test_labels40_to_13_rejects_bad_input():
    np.testing.assert_array_equal(labels40_to_13(np.array([[0, 1, 22]])), [[0, 12, 3]])
    with pytest.raises(ValueError, match="0..40"):
        labels40_to_13(np.array([41]))
    with pytest.raises(ValueError, match="integer"):
        labels40_to_13(np.array([1.0]))


def test_nyu_k_and_scaling():
    assert NYU_SIZE == (480, 640)
    assert NYU_K.dtype == np.float64
    assert NYU_K[0, 0] == 518.8579 and NYU_K[1, 2] == 253.73617
    np.testing.assert_allclose(scaled_nyu_k(480, 640), NYU_K)
    K = scaled_nyu_k(240, 320)
    assert K[0, 0] == pytest.approx(518.8579 / 2)
    assert K[0, 2] == pytest.approx((325.58245 + 0.5) / 2 - 0.5)
    with pytest.raises(ValueError):
        scaled_nyu_k(0, 10)
