"""Teacher pseudo-labels for real frames (joint_perception.training.pseudo_labels), with the real
PASCAL DeepLabV3-MobileNetV2 teacher on a real NYUv2 frame."""

from __future__ import annotations

import numpy as np
import pytest

from joint_perception.training.pseudo_labels import TeacherLabels, _aligned

TEACHER = "pretrained/coral_test_data/deeplabv3_mnv2_pascal_quant.tflite"


def test_aligned_sizes():
    assert (
        _aligned(480) == 481 and _aligned(640) == 641 and _aligned(513) == 513 and _aligned(3) == 17
    )


def test_teacher_labels_merge_and_cache(shared_data, tmp_path):
    from joint_perception.data.nyuv2 import NYUFolder

    ds = NYUFolder(shared_data / "nyuv2_test", frames=["0014"])  # a sofa and a potted plant
    tl = TeacherLabels(ds, shared_data / TEACHER, 0.7, cache_dir=tmp_path, identity="nyu0014")
    assert tl.prepare(progress=False) == 1 and tl.prepare(progress=False) == 0
    again = TeacherLabels(ds, shared_data / TEACHER, 0.7, cache_dir=tmp_path, identity="nyu0014")
    s = again[0]
    assert again._teacher is None  # read from the cache, the teacher never built
    own = ds[0]["labels"]
    teacher = tl.teacher_labels(ds[0]["rgb"])
    assert s["has_labels"] and s["labels"].shape == own.shape
    labelled = teacher > 0
    assert 0.01 < labelled.mean() < 0.5
    assert set(np.unique(teacher)) <= {0, 5, 6, 7, 25, 31, 40}  # NYU ids of PASCAL classes only
    np.testing.assert_array_equal(s["labels"][labelled], teacher[labelled])
    np.testing.assert_array_equal(s["labels"][~labelled], own[~labelled])
    # the teacher is right about what it labels here: the sofa and the plant (otherprop)
    assert (teacher[labelled] == own[labelled]).mean() > 0.5
    # another confidence threshold is another cache entry
    assert TeacherLabels(ds, shared_data / TEACHER, 0.9, cache_dir=tmp_path).cache != tl.cache
    with pytest.raises(ValueError):
        TeacherLabels(ds, shared_data / TEACHER, 0.0)
    with pytest.raises(FileNotFoundError):
        TeacherLabels(ds, tmp_path / "nope.tflite")
