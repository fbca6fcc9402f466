"""``evaluate`` on the real NYUv2 test frames (joint_perception.evaluation.evaluate)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from joint_perception.evaluation.evaluate import load_model, main
from joint_perception.metrics import DepthMetrics, SegmentationMetrics

FRAMES = ["0001", "0433"]  # a filled-depth frame and a raw one with holes and GT normals


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from joint_perception.export.onnx_export import export_onnx
    from joint_perception.models import build_model

    torch.manual_seed(0)
    model = build_model("realtime", width_mult=0.35, decoder_channels=16, head_channels=8)
    out = tmp_path_factory.mktemp("model")
    export_onnx(model, out, (96, 128))
    return out


def test_evaluate_writes_table_figure_and_correct_metrics(exported, shared_data, tmp_path):
    from joint_perception.data.nyuv2 import NYUFolder

    out = tmp_path / "eval"
    rc = main(
        [
            "--model",
            str(exported),
            "--dataset",
            "nyu_folder",
            "--root",
            str(shared_data / "nyuv2_test"),
            "--arg",
            f"frames={FRAMES}",
            "--out",
            str(out),
            "--backend",
            "onnxruntime",
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_frames"] == 2
    # recompute independently through the same runtime pipeline
    pipe = load_model(exported, "onnxruntime")
    dm, sm = DepthMetrics(max_depth=10.0), SegmentationMetrics(40)
    for s in (NYUFolder(shared_data / "nyuv2_test", frames=FRAMES)[i] for i in range(2)):
        r = pipe.run(s["rgb"], s["K"])
        dm.update(r.depth, np.where(s["depth"] > 0, s["depth"], np.nan))
        sm.update(r.labels, s["labels"])
    ref = dm.compute()
    for k in ("abs_rel", "rmse", "delta1", "n_pixels", "coverage"):
        assert m["depth"][k] == pytest.approx(ref[k], rel=1e-9), k
    assert m["segmentation"]["miou"] == pytest.approx(sm.compute()["miou"])
    # raw frame 0433 has ~35 % holes: far fewer valid pixels than 2 full frames
    assert ref["n_pixels"] < 2 * 480 * 640 * 0.9
    assert m["normals"]["n_pixels"] > 0  # 0433 has GT normals
    bins = m["depth_by_range"]
    assert sum(b["n_pixels"] for b in bins.values()) == m["depth"]["n_pixels"]
    md = (out / "metrics.md").read_text()
    assert "| all |" in md and "## Segmentation" in md and "## Surface normals" in md
    # the trivial baselines are scored on the same frames and printed beside the model
    assert m["baselines"]["depth"]["n_pixels"] == m["depth"]["n_pixels"]
    assert set(m["margins"]) == {"abs_rel", "delta1", "miou", "pixel_acc"}
    assert "## Model vs trivial baselines" in md
    fig = cv2.imread(str(out / "figure.png"))
    assert fig is not None and fig.shape[0] > 200 and fig.shape[1] > fig.shape[0]


def test_evaluate_checkpoint_matches_onnx(exported, shared_data, tmp_path):
    """The torch module (model.pt) and the ONNX model give the same metrics."""
    args = [
        "--dataset",
        "nyu_folder",
        "--root",
        str(shared_data / "nyuv2_test"),
        "--arg",
        "frames=['0001']",
        "--num-classes",
        "13",
    ]
    assert main(["--model", str(exported / "model.pt"), "--out", str(tmp_path / "pt"), *args]) == 0
    assert (
        main(
            [
                "--model",
                str(exported),
                "--backend",
                "onnxruntime",
                "--out",
                str(tmp_path / "onnx"),
                *args,
            ]
        )
        == 0
    )
    a = json.loads((tmp_path / "pt" / "metrics.json").read_text())
    b = json.loads((tmp_path / "onnx" / "metrics.json").read_text())
    assert a["depth"]["abs_rel"] == pytest.approx(b["depth"]["abs_rel"], rel=1e-4)
    assert a["segmentation"]["miou"] == pytest.approx(b["segmentation"]["miou"], abs=1e-3)
    assert a["settings"]["num_classes"] == 13 and len(a["segmentation"]["iou_per_class"]) == 13


def test_evaluate_bad_inputs(exported, tmp_path, capsys):
    assert (
        main(
            [
                "--model",
                str(tmp_path / "nope"),
                "--dataset",
                "nyu_folder",
                "--root",
                str(tmp_path),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "no rgb/ directory" in capsys.readouterr().err
    assert (
        main(
            ["--model", str(tmp_path / "nope"), "--dataset", "nosuch", "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "unknown data set" in capsys.readouterr().err


def test_evaluate_records_its_numbers_in_the_model_metadata(exported, shared_data, tmp_path):
    import shutil

    from joint_perception.metadata import load_metadata

    model = tmp_path / "model"
    shutil.copytree(exported, model)
    common = ["--dataset", "nyu_folder", "--root", str(shared_data / "nyuv2_test")]
    common += ["--arg", "frames=['0001']", "--backend", "onnxruntime"]
    out = tmp_path / "eval"
    argv = ["--model", str(model), *common, "--out", str(out), "--record", "nyuv2_test1"]
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    rec = load_metadata(model / "metadata.json").metrics["nyuv2_test1"]
    assert rec["depth"]["abs_rel"] == pytest.approx(m["depth"]["abs_rel"])
    assert rec["baselines"] == m["baselines"] and rec["dataset"]["name"] == "nyu_folder"
    assert load_model(model, "onnxruntime").metadata.metrics["nyuv2_test1"]  # still loads
    onnx_file = ["--model", str(model / "model.onnx"), *common, "--out", str(tmp_path / "e2")]
    assert main([*onnx_file, "--record", "x"]) == 2  # a bare .onnx has no metadata to update


def test_evaluate_refuses_before_writing_anything(exported, tmp_path, capsys):
    """Mistakes that used to fail only after the evaluation (and half-replace an earlier
    output directory) are refused first: exit 2, the earlier files untouched. Synthetic
    frames: no ../shared needed."""
    out = tmp_path / "eval"
    base = ["--model", str(exported), "--dataset", "synthetic", "--arg", "length=2"]
    base += ["--backend", "onnxruntime"]
    assert main([*base, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"metrics.json", "metrics.md", "figure.png"}
    afile = tmp_path / "afile"
    afile.write_text("x")
    for extra, message in [
        (["--figure-rows", "0"], "--figure-rows must be >= 1"),
        (["--max-depth", "0"], "--max-depth must be a finite number of metres > 0"),
        (["--max-depth", "inf"], "--max-depth must be a finite number of metres > 0"),
        (["--num-classes", "0"], "--num-classes must be >= 1"),
        (["--arg", "length=0"], "no frames to evaluate"),
        (["--record", " "], "--record needs a name"),
        (["--record", "r", "--model", str(exported / "model.onnx")], "not the file model.onnx"),
    ]:
        capsys.readouterr()
        assert main([*base, "--out", str(out), *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main([*base, "--out", str(afile / "sub")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
