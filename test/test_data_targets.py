"""Which ground truth each reader supplies (data.registry.dataset_targets), the NYUD_MT release
formats and the NYUv2 normals options (docs/data.md)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from nyu_standin import write_nyud_mt, write_nyuv2_labeled
from torch.utils.data import ConcatDataset

from joint_perception.data.nyuv2 import NYUDMultiTask, NYUFolder, NYUv2Labeled
from joint_perception.data.registry import build_dataset, dataset_targets
from joint_perception.data.synthetic import BASIC_OPTIONS, SyntheticScenes


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.clip((a * b).sum(-1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def test_nyud_mt_astmt_release_format(tmp_path):
    root = write_nyud_mt(tmp_path / "NYUD_MT", n_train=2, n_val=1)
    ds = NYUDMultiTask(root, "train")
    assert set(ds.targets) == {"depth", "segmentation", "normals"}
    ref = SyntheticScenes(3, height=48, width=64, seed=21, **BASIC_OPTIONS)[0]
    s = ds[0]
    np.testing.assert_allclose(s["depth"], np.asarray(ref["depth"]), rtol=1e-6)
    assert np.array_equal(s["labels"], np.asarray(ref["labels"]))
    valid = np.abs(np.asarray(ref["normals"])).sum(-1) > 0
    assert s["has_normals"] and valid.mean() > 0.5
    # JPEG-coded normals decode within a few degrees
    assert np.median(_angle_deg(s["normals"][valid], np.asarray(ref["normals"])[valid])) < 3.0
    assert s["edges"].dtype == np.uint8 and s["edges"].any()
    assert len(NYUDMultiTask(root, "val")) == 1
    # the re-release: .npy depth / normals / edge, .png segmentation
    np.save(root / "depth" / "0001.npy", np.full((48, 64), 3.0, np.float32))
    (root / "depth" / "0001.mat").unlink()
    assert ds[0]["depth"][0, 0] == pytest.approx(3.0)
    bare = write_nyud_mt(tmp_path / "bare", normals=False)
    assert set(NYUDMultiTask(bare, "train").targets) == {"depth", "segmentation"}


def test_nyuv2_labeled_normals_options(tmp_path):
    files = write_nyuv2_labeled(tmp_path / "nyu", n=3, h=48, w=64)
    base = dict(
        mat_path=files["mat"],
        split="all",
        splits_path=files["splits"],
        class_mapping=files["classes"],
    )
    plain = NYUv2Labeled(**base)
    assert plain.targets == ("depth", "segmentation") and not plain[0]["has_normals"]
    # a normals folder by 1-based labeled index; frames without a file stay without normals
    ref = SyntheticScenes(3, height=48, width=64, seed=11, **BASIC_OPTIONS)[1]
    n = np.asarray(ref["normals"], np.float32)
    enc = np.clip(np.rint((n + 1.0) * 127.5), 0, 255).astype(np.uint8)
    (tmp_path / "normals").mkdir()
    assert cv2.imwrite(str(tmp_path / "normals" / "0002.png"), cv2.cvtColor(enc, cv2.COLOR_RGB2BGR))
    ds = NYUv2Labeled(**base, normals_root=tmp_path / "normals")
    assert ds.targets == ("depth", "segmentation", "normals")
    assert ds[1]["has_normals"] and not ds[0]["has_normals"]
    valid = np.abs(n).sum(-1) > 0
    assert np.median(_angle_deg(ds[1]["normals"][valid], n[valid])) < 1.0
    # normals from the depth: unit vectors facing the camera on the planes of the scene
    fd = NYUv2Labeled(**base, normals_from_depth=True)
    s = fd[0]
    got = s["normals"][np.abs(s["normals"]).sum(-1) > 0]
    assert s["has_normals"] and len(got) > 0.3 * 48 * 64
    np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="not both"):
        NYUv2Labeled(**base, normals_root=tmp_path / "normals", normals_from_depth=True)
    with pytest.raises(FileNotFoundError, match="normals folder"):
        NYUv2Labeled(**base, normals_root=tmp_path / "nope")


def test_dataset_targets_through_wrappers(tmp_path):
    files = write_nyuv2_labeled(tmp_path / "nyu", n=3, h=48, w=64)
    mat = build_dataset(
        "nyuv2_labeled",
        "train",
        mat_path=str(files["mat"]),
        splits_path=str(files["splits"]),
        class_mapping=str(files["classes"]),
        max_items=1,
        repeat=3,
    )
    assert dataset_targets(mat) == {"depth", "segmentation"}
    syn = build_dataset("synthetic", "train", length=2, height=32, width=32)
    assert dataset_targets(syn) == {"depth", "segmentation", "normals"}
    assert dataset_targets(ConcatDataset([mat, syn])) == {"depth", "segmentation", "normals"}

    class Unknown:  # a reader that does not say: no guess
        def __len__(self):
            return 1

    assert dataset_targets(Unknown()) is None
    assert dataset_targets(ConcatDataset([mat, Unknown()])) is None


def test_nyu_folder_targets_on_real_frames(shared_data):
    train = NYUFolder(shared_data / "nyuv2_train_depth")
    assert train.targets == ("depth", "normals")  # normal/0003.png, no labels
    test = NYUFolder(shared_data / "nyuv2_test")
    assert test.targets == ("depth", "segmentation", "normals")
    kitchen = build_dataset(
        "sevenscenes", "train", root=str(shared_data / "sevenscenes_redkitchen"), normals=False
    )
    assert dataset_targets(kitchen) == {"depth"}
