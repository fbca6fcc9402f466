"""Data set readers on real samples (../shared/data) and on fixtures in the true on-disk formats."""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from joint_perception.data.cityscapes import Cityscapes
from joint_perception.data.kitti import KITTIDepth, read_split_list
from joint_perception.data.nyuv2 import NYUDMultiTask, NYUFolder, NYUv2Labeled, load_splits
from joint_perception.data.registry import build_dataset, build_mixture
from joint_perception.data.sunrgbd import SUNRGBD, decode_sunrgbd_depth
from joint_perception.nyuv2_classes import MAP40_TO_13, NYU_K, scaled_nyu_k


def _png(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), img)


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- NYUv2 labeled
@pytest.fixture()
def nyu_mat(tmp_path):
    """A 3-frame nyu_depth_v2_labeled.mat in the real MATLAB v7.3 layout (column-major -> h5py
    sees (N, 3, W, H) / (N, W, H)), plus splits.mat and a 894->40 mapping."""
    h, w = 6, 8
    rgb = np.stack([_rgb(h, w, i) for i in range(3)])
    depth = np.stack([np.full((h, w), 1.0 + i, np.float32) for i in range(3)])
    depth[0, 2, 3] = 4.5
    labels = np.zeros((3, h, w), np.uint16)
    labels[:, 1, 2] = 894
    labels[:, 3, 5] = 5
    path = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(path, "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)
        f["depths"] = depth.transpose(0, 2, 1)
        f["labels"] = labels.transpose(0, 2, 1)
    scipy.io.savemat(
        tmp_path / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2]])}
    )
    mapping = np.zeros(894, np.int64)
    mapping[893] = 40  # raw 894 -> 40
    mapping[4] = 7  # raw 5 -> 7
    return path, tmp_path / "splits.mat", mapping, rgb, depth


def test_nyuv2_labeled_layout_split_and_mappings(nyu_mat):
    path, splits, mapping, rgb, depth = nyu_mat
    train = NYUv2Labeled(path, "train", splits, mapping)
    assert len(train) == 2
    s = train[0]
    np.testing.assert_array_equal(s["rgb"], rgb[0])  # transposed back to HxWx3
    assert s["depth"][2, 3] == pytest.approx(4.5) and s["depth"][0, 0] == pytest.approx(1.0)
    assert s["labels"][1, 2] == 40 and s["labels"][3, 5] == 7 and s["labels"][0, 0] == 0
    assert train[1]["depth"][0, 0] == pytest.approx(3.0)  # 1-based index 3
    test = NYUv2Labeled(path, "test", splits, mapping, num_classes=13)
    assert len(test) == 1 and test[0]["labels"][1, 2] == MAP40_TO_13[40]
    raw = NYUv2Labeled(path, "all", num_classes=894)
    assert len(raw) == 3 and raw[2]["labels"][1, 2] == 894
    np.testing.assert_allclose(raw[0]["K"], scaled_nyu_k(6, 8))  # tiny fixture: NYU_K resized


def test_nyuv2_labeled_refuses_malformed(tmp_path, nyu_mat):
    bad = tmp_path / "bad.mat"
    with h5py.File(bad, "w") as f:
        f["images"] = np.zeros((1, 3, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="bad.mat.*missing"):
        NYUv2Labeled(bad, "all", num_classes=894)
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="junk.mat"):
        NYUv2Labeled(junk, "all", num_classes=894)
    path, splits, *_ = nyu_mat
    with pytest.raises(ValueError, match="class_mapping"):
        NYUv2Labeled(path, "train", splits)


def test_official_splits_file(shared_data):
    sp = load_splits(shared_data / "nyuv2_splits.mat")
    assert sp["train"].size == 795 and sp["test"].size == 654
    assert sp["train"][0] == 2 and sp["test"][0] == 0  # 1-based 3 and 1
    assert not set(sp["train"]) & set(sp["test"])


# ----------------------------------------------------------------------------- NYUD_MT / folder
def test_nyud_multitask(tmp_path):
    root = tmp_path / "NYUD_MT"
    (root / "gt_sets").mkdir(parents=True)
    (root / "gt_sets" / "train.txt").write_text("0001\n0002\n")
    for i, fid in enumerate(["0001", "0002"]):
        _png(root / "images" / f"{fid}.png", _rgb(12, 16, i))
        (root / "depth").mkdir(exist_ok=True)
        np.save(root / "depth" / f"{fid}.npy", np.full((12, 16), 2.5, np.float32))
        seg = np.zeros((12, 16), np.uint8)
        seg[0, 0] = 40
        _png(root / "segmentation" / f"{fid}.png", seg)
        nrm = np.full((12, 16, 3), 127, np.uint8)
        nrm[5, 5] = (127, 127, 0)  # n = (0, 0, -1) after rgb / 127.5 - 1 (approximately)
        _png(root / "normals" / f"{fid}.png", nrm)
        edges = np.zeros((12, 16), np.uint8)
        edges[3, :] = 255
        _png(root / "edges" / f"{fid}.png", edges)
    ds = NYUDMultiTask(root, "train", num_classes=13)
    s = ds[1]
    assert s["depth"][0, 0] == pytest.approx(2.5)
    assert s["labels"][0, 0] == MAP40_TO_13[40]
    assert s["has_normals"] and s["normals"][0, 0].tolist() == [0, 0, 0]  # grey = invalid
    np.testing.assert_allclose(s["normals"][5, 5], [0, 0, -1], atol=0.01)
    assert s["edges"][3].all() and not s["edges"][4].any()
    # 12x16 is smaller than 480x640: K is NYU_K with a centred-crop principal point
    assert s["K"][0, 2] == pytest.approx(NYU_K[0, 2] - (640 - 16) // 2)
    (root / "images" / "0002.png").unlink()
    with pytest.raises(FileNotFoundError, match="0002"):
        ds[1]
    with pytest.raises(FileNotFoundError, match="val.txt"):
        NYUDMultiTask(root, "val")


def test_nyu_folder_on_real_frames(shared_data):
    ds = NYUFolder(shared_data / "nyuv2_test", frames=["0001", "0433"])
    assert len(ds) == 2
    s = ds[0]
    raw = cv2.imread(
        str(shared_data / "nyuv2_test" / "depth_mm" / "0001.png"), cv2.IMREAD_UNCHANGED
    )
    np.testing.assert_allclose(s["depth"], raw / 1000.0, rtol=1e-6)
    assert s["has_labels"] and s["labels"].max() <= 40 and not s["has_normals"]
    assert s["K"][0, 0] == pytest.approx(518.8579)
    s433 = ds[1]
    assert s433["has_normals"] and (s433["depth"] == 0).mean() > 0.2  # raw Kinect holes
    n = s433["normals"][np.abs(s433["normals"]).sum(-1) > 0]
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-5)
    ds13 = NYUFolder(shared_data / "nyuv2_test", num_classes=13, frames=["0001"])
    np.testing.assert_array_equal(ds13[0]["labels"], MAP40_TO_13[s["labels"]])
    train = NYUFolder(shared_data / "nyuv2_train_depth")
    assert len(train) == 10 and not train[0]["has_labels"]
    with pytest.raises(FileNotFoundError, match="9999"):
        NYUFolder(shared_data / "nyuv2_test", frames=["9999"])


# ----------------------------------------------------------------------------- SUN RGB-D
def test_sunrgbd_toolbox_layout(tmp_path):
    root = tmp_path / "SUNRGBD"
    frame = root / "kv1" / "NYUdata" / "NYU0001"
    _png(frame / "image" / "NYU0001.png", _rgb(6, 8))
    d_mm = np.full((6, 8), 1234, np.uint16)
    d_mm[0, 0] = 9000  # 9 m: beyond the 8 m the toolbox trusts
    stored = ((d_mm.astype(np.uint32) << 3) | (d_mm.astype(np.uint32) >> 13)).astype(np.uint16)
    _png(frame / "depth_bfx" / "NYU0001.png", stored)
    (frame / "intrinsics.txt").write_text(
        "518.857901 0 284.582449\n0 519.469611 208.736166\n0 0 1\n"
    )
    lab = np.zeros((6, 8), np.uint8)
    lab[2, 2] = 37
    _png(frame / "label" / "label37.png", lab)
    ds = SUNRGBD(root)
    assert ds.frames == ["kv1/NYUdata/NYU0001"]
    s = ds[0]
    assert s["depth"][1, 1] == pytest.approx(1.234) and s["depth"][0, 0] == 0.0
    assert s["K"][0, 2] == pytest.approx(284.582449) and s["labels"][2, 2] == 37
    # split list with the toolbox's absolute paths
    lst = tmp_path / "train.txt"
    lst.write_text("/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001/\n")
    assert SUNRGBD(root, "train", split_file=lst).frames == ["kv1/NYUdata/NYU0001"]
    # SUNRGBD2Dseg.mat (HDF5 object references, (W, H) per frame) in meta order
    seg = tmp_path / "SUNRGBD2Dseg.mat"
    with h5py.File(seg, "w") as f:
        a = f.create_dataset("refs/a", data=np.full((8, 6), 3, np.uint16))
        b = f.create_dataset("refs/b", data=np.full((8, 6), 5, np.uint16))
        r = f.create_dataset("SUNRGBD2Dseg/seglabel", (2, 1), dtype=h5py.ref_dtype)
        r[0, 0], r[1, 0] = a.ref, b.ref
    order = tmp_path / "order.txt"
    order.write_text("SUNRGBD/kv2/other\nSUNRGBD/kv1/NYUdata/NYU0001\n")
    assert (SUNRGBD(root, seg_mat=seg, meta_order=order)[0]["labels"] == 5).all()
    assert decode_sunrgbd_depth(stored)[1, 1] == pytest.approx(1.234)
    (frame / "intrinsics.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="intrinsics.txt"):
        ds[0]


# ----------------------------------------------------------------------------- Cityscapes
def test_cityscapes_disparity_to_depth(tmp_path):
    stem = "aachen_000000_000019"
    _png(tmp_path / "leftImg8bit" / "train" / "aachen" / f"{stem}_leftImg8bit.png", _rgb(4, 6))
    t = np.full((4, 6), 255, np.uint8)
    t[0, 0], t[1, 1] = 0, 18
    _png(tmp_path / "gtFine" / "train" / "aachen" / f"{stem}_gtFine_labelTrainIds.png", t)
    disp = np.zeros((4, 6), np.uint16)
    disp[0, 0] = 20 * 256 + 1  # 20 px
    disp[0, 1] = 1  # zero disparity: invalid
    _png(tmp_path / "disparity" / "train" / "aachen" / f"{stem}_disparity.png", disp)
    cam = {
        "extrinsic": {"baseline": 0.209313},
        "intrinsic": {"fx": 2262.52, "fy": 2265.30, "u0": 1096.98, "v0": 513.137},
    }
    p = tmp_path / "camera" / "train" / "aachen" / f"{stem}_camera.json"
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps(cam))
    s = Cityscapes(tmp_path, "train")[0]
    assert s["depth"][0, 0] == pytest.approx(0.209313 * 2262.52 / 20, rel=1e-5)
    assert s["depth"][0, 1] == 0 and s["depth"][2, 2] == 0
    assert s["labels"][0, 0] == 1 and s["labels"][1, 1] == 19 and s["labels"][2, 2] == 0
    assert s["K"][0, 0] == pytest.approx(2262.52)
    p.write_text("{}")
    with pytest.raises(ValueError, match="camera.json"):
        Cityscapes(tmp_path, "train")[0]


# ----------------------------------------------------------------------------- KITTI
def test_kitti_depth_calib_and_split_lists(tmp_path):
    raw, ann = tmp_path / "raw", tmp_path / "ann"
    drive = "2011_09_26/2011_09_26_drive_0001_sync"
    _png(raw / drive / "image_02" / "data" / "0000000005.png", _rgb(5, 7))
    _png(raw / drive / "image_02" / "data" / "0000000006.png", _rgb(5, 7))
    (raw / "2011_09_26" / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012\nP_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 "
        "0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03\n"
    )
    d = np.zeros((5, 7), np.uint16)
    d[2, 3] = int(12.5 * 256)
    _png(
        ann
        / "train"
        / "2011_09_26_drive_0001_sync"
        / "proj_depth"
        / "groundtruth"
        / "image_02"
        / "0000000005.png",
        d,
    )
    lst = tmp_path / "eigen.txt"
    lst.write_text(f"{drive} 5 l\n{drive} 6 l\n")
    ds = KITTIDepth(raw, ann, lst)
    assert len(ds) == 1 and ds.dropped == 1
    s = ds[0]
    assert s["depth"][2, 3] == pytest.approx(12.5) and (s["depth"] > 0).sum() == 1
    assert s["K"][0, 0] == pytest.approx(721.5377) and s["K"][1, 2] == pytest.approx(172.854)
    bts = tmp_path / "bts.txt"
    bts.write_text(f"{drive}/image_02/data/0000000005.png x/0000000005.png 721.5377\n")
    assert read_split_list(bts) == [(drive, "l", 5)]
    bts.write_text("garbage\n")
    with pytest.raises(ValueError, match="bts.txt:1"):
        read_split_list(bts)


# ----------------------------------------------------------------------------- rosbag, registry
def test_rosbag_recording_matches_the_folder(shared_data):
    pytest.importorskip("joint_perception.data.rosbag_io")
    from joint_perception.data.recordings import RosbagRecording

    ds = RosbagRecording(shared_data / "bags" / "nyuv2_test3_sqlite3")
    assert len(ds) == 3
    ref = NYUFolder(shared_data / "nyuv2_test", frames=["0001"])[0]
    s = ds[0]
    np.testing.assert_array_equal(s["rgb"], ref["rgb"])
    np.testing.assert_allclose(s["depth"], ref["depth"], atol=1e-6)
    np.testing.assert_allclose(s["K"], ref["K"], rtol=1e-6)
    assert not s["has_labels"]


def test_registry_and_mixture(shared_data):
    syn = build_dataset("synthetic", "train", length=3, height=32, width=40, seed=1)
    val = build_dataset("synthetic", "val", length=3, height=32, width=40, seed=1)
    s = syn[0]
    assert s["labels"].dtype == np.int64 and s["has_labels"] and s["has_normals"]
    assert not np.array_equal(
        s["rgb"], val[0]["rgb"]
    )  # validation scenes differ from training ones
    mix = build_mixture(
        [
            {"name": "synthetic", "length": 3, "height": 32, "width": 40},
            {
                "name": "nyu_folder",
                "root": str(shared_data / "nyuv2_train_depth"),
                "max_items": 2,
                "repeat": 3,
            },
        ]
    )
    assert len(mix) == 3 + 6
    assert not mix[8]["has_labels"]
    with pytest.raises(KeyError, match="unknown data set"):
        build_dataset("nyu2")
    with pytest.raises(ValueError, match="name"):
        build_mixture([{"root": "x"}])


def test_normal_axes_convention(shared_data):
    """The stored 0433 normals agree with normals computed from its depth only after the axis
    conversion x,-z,y (DrSleep's files are not in the REP 103 optical frame)."""
    from joint_perception.data.nyuv2 import parse_normal_axes
    from joint_perception.geometry import normals_from_depth

    def median_angle(axes):
        s = NYUFolder(shared_data / "nyuv2_test", frames=["0433"], normal_axes=axes)[0]
        d = cv2.medianBlur(s["depth"], 5)
        g = normals_from_depth(np.where(d > 0, d, np.nan).astype(np.float32), s["K"])
        ok = (np.abs(s["normals"]).sum(-1) > 0) & np.isfinite(g).all(-1)
        cos = np.clip((s["normals"][ok] * g[ok]).sum(-1), -1, 1)
        return np.degrees(np.median(np.arccos(cos)))

    assert median_angle("x,-z,y") < 35 < 70 < median_angle("x,y,z")
    order, signs = parse_normal_axes("x,-z,y")
    assert order.tolist() == [0, 2, 1] and signs.tolist() == [1, -1, 1]
    with pytest.raises(ValueError, match="signed permutation"):
        parse_normal_axes("x,x,y")


def test_rosbag_recording_normals_from_sensor_depth(tmp_path):
    """``normals=True`` estimates unit normal targets from the bag's depth that agree with the
    scene's exact normals (synthetic bag: 16UC1 mm depth of a rendered room)."""
    pytest.importorskip("joint_perception.data.rosbag_io")
    from joint_perception.data.recordings import RosbagRecording
    from joint_perception.data.registry import dataset_targets
    from joint_perception.data.synthetic import SyntheticScenes
    from joint_perception.data.synthetic_bag import make_synthetic_bag

    bag = make_synthetic_bag(tmp_path / "bag", frames=1, height=96, width=128)
    plain = RosbagRecording(bag)
    ds = RosbagRecording(bag, normals=True)
    assert dataset_targets(plain) == {"depth"}
    assert dataset_targets(ds) == {"depth", "normals"}
    assert not plain[0]["has_normals"] and ds[0]["has_normals"]
    n = ds[0]["normals"]
    ref = SyntheticScenes(1, 96, 128, seed=0)[0]["normals"]
    have = np.linalg.norm(n, axis=-1) > 0
    assert have.mean() > 0.3  # walls, floor, furniture faces (none near depth edges)
    np.testing.assert_allclose(np.linalg.norm(n[have], axis=-1), 1.0, atol=1e-5)
    cos = np.clip((n[have] * ref[have]).sum(-1), -1, 1)
    assert np.degrees(np.median(np.arccos(cos))) < 5.0


def test_a_recipe_value_left_unset_is_named(tmp_path):
    from joint_perception.training.datamodule import build_spec

    with pytest.raises(ValueError, match=r"set bag on the command line, e.g. data.train.0.bag="):
        build_spec({"name": "rosbag", "bag": "???"}, "train")
