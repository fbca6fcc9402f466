"""HTML/Markdown replay report with matplotlib figures (evaluation.report)."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from joint_perception.accuracy import AccuracyEvaluator, FrameReference, depth_error_map
from joint_perception.evaluation.report import ReportSample, write_report

K = np.array([[80.0, 0, 39.5], [0, 80.0, 31.5], [0, 0, 1]])


def _frame(rng):
    yy, xx = np.mgrid[0:64, 0:80]
    gt = (1.0 + 0.05 * yy).astype(np.float32)  # 1 .. 4.15 m: two distance bins
    pred = gt * np.float32(1.1)
    labels = np.where(xx < 40, 1, 2).astype(np.uint8)
    rgb = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    normals = np.zeros((64, 80, 3), np.float32)
    normals[..., 2] = -1
    return rgb, gt, pred, labels, normals


def test_report_has_every_section_and_readable_figures(tmp_path):
    rng = np.random.default_rng(1)
    rgb, gt, pred, labels, normals = _frame(rng)
    ev = AccuracyEvaluator(2, class_names=["wall", "floor"])
    ev.add(1, pred, labels, normals, FrameReference(K=K, rgb=rgb, depth=gt, labels=labels))
    acc = ev.result()
    summary = {
        "performance": {"MEAN_FRAME_RATE": 9.87, "NUM_MISSED_FRAMES": 1},
        "bag": "some/bag",
        "backend": "onnxruntime",
    }
    sample = ReportSample("frame 1", rgb, pred, gt, labels, normals, depth_error_map(pred, gt), K)
    html_path, md_path = write_report(
        tmp_path,
        summary,
        acc,
        send_times_s=[0.0, 0.1, 0.2],
        latencies_ms=[50.0, None, 60.0],
        stages_ms={"decode": 1.0, "inference": 20.0},
        samples=[sample],
        notes=["test model"],
    )
    md = md_path.read_text()
    page = html_path.read_text()
    for text in (
        "MEAN_FRAME_RATE",
        "9.87",
        "onnxruntime",
        "Depth by GT distance",
        "Segmentation",
        "Normals",
        "test model",
    ):
        assert text in md and text in page
    assert "| 0.1 |" in md  # abs rel of a prediction 10 % too far
    figures = re.findall(r"src='([^']+)'", page)
    assert sorted(figures) == sorted(re.findall(r"\]\(([^)]+)\)", md))
    names = {f.split("/")[-1] for f in figures}
    assert names == {
        "latency.png",
        "stages.png",
        "iou.png",
        "depth_by_range.png",
        "samples.png",
        "pointcloud.png",
    }
    for rel in figures:
        img = cv2.imread(str(tmp_path / rel))
        assert img is not None and img.shape[0] >= 200 and img.shape[1] >= 400
        assert img.std() > 5  # not a blank canvas


def test_report_leaves_out_sections_without_data(tmp_path):
    html_path, md_path = write_report(tmp_path, {"performance": {"NUM_FRAMES_SENT": 3}})
    page = html_path.read_text()
    assert "<img" not in page and "NUM_FRAMES_SENT" in page
    assert not (tmp_path / "report_files").exists()


def test_report_files_are_replaced_as_a_whole(tmp_path, monkeypatch):
    """report_files/ is one run's: a report with fewer figures leaves none of the earlier
    run's behind, and a report that fails while drawing leaves the earlier figures and pages
    as they were."""
    import joint_perception.evaluation.report as report

    rng = np.random.default_rng(2)
    rgb, gt, pred, labels, normals = _frame(rng)
    sample = ReportSample("f", rgb, pred, gt, labels, normals, None, K)
    kw = {"send_times_s": [0.0, 0.1], "latencies_ms": [5.0, 6.0], "stages_ms": {"decode": 1.0}}
    write_report(tmp_path, {"performance": {}}, samples=[sample], **kw)
    files = tmp_path / "report_files"
    assert {p.name for p in files.iterdir()} == {
        "latency.png",
        "stages.png",
        "samples.png",
        "pointcloud.png",
    }
    write_report(tmp_path, {"performance": {}}, **kw)
    assert {p.name for p in files.iterdir()} == {"latency.png", "stages.png"}
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    page = (tmp_path / "report.html").read_text()

    def broken(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "figure_stages", broken)
    with pytest.raises(KeyboardInterrupt):
        write_report(tmp_path, {"performance": {}}, samples=[sample], **kw)
    assert {p.name: p.read_bytes() for p in files.iterdir()} == before
    assert (tmp_path / "report.html").read_text() == page
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
