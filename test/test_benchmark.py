"""benchmark: timing helpers, FLOP counting, point-cloud baseline and one small real run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from joint_perception.evaluation.benchmark import (
    count_flops,
    format_table,
    main,
    measure_sgemm,
    pack_cloud_per_point,
    pointcloud_baseline,
    time_ms,
)
from joint_perception.geometry import backproject
from joint_perception.pointcloud import pack_organized

K = np.array([[50.0, 0, 2.0], [0, 40.0, 1.5], [0, 0, 1]])


def test_per_point_reference_matches_the_vectorised_packing():
    depth = np.array([[1.0, 2.0, np.nan, 0.0, 3.5]] * 4, np.float32)
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    labels = np.arange(20, dtype=np.uint8).reshape(4, 5)
    ref = np.frombuffer(pack_cloud_per_point(depth, K, rgb, labels), np.uint8)
    fast = pack_organized(backproject(depth, K), rgb, labels).data
    assert ref.size == fast.size == 20 * 20
    r32, f32 = ref.view("<u4"), fast.view("<u4")
    # rgb and label words identical; x, y, z equal to float32 rounding (NaN where invalid)
    np.testing.assert_array_equal(r32.reshape(-1, 5)[:, 3:], f32.reshape(-1, 5)[:, 3:])
    np.testing.assert_allclose(
        ref.view("<f4").reshape(-1, 5)[:, :3], fast.view("<f4").reshape(-1, 5)[:, :3], rtol=1e-6
    )
    # pixel (0, 1): z = 2, x = (1 - 2) * 2 / 50
    assert ref.view("<f4").reshape(-1, 5)[1, :3] == pytest.approx([-0.04, -1.5 * 2 / 40, 2.0])


def test_pointcloud_baseline_reports_a_checked_speedup():
    depth = np.full((24, 32), 2.0, np.float32)
    depth[3, 4] = np.nan
    rgb = np.zeros((24, 32, 3), np.uint8)
    labels = np.ones((24, 32), np.uint8)
    b = pointcloud_baseline(depth, K, rgb, labels, repeats=2)
    assert b["same_points"] is True and b["points"] == 768
    assert b["per_point_python_ms"] > 0 and b["speedup"] == pytest.approx(
        b["per_point_python_ms"] / b["vectorised_ms"]
    )


def test_count_flops_of_a_convolution_by_hand():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    # 2 FLOPs per multiply-add: 2 * out 4 * in 3 * 3 * 3 * 8 * 8 pixels
    assert count_flops(conv, (8, 8)) == 2 * 4 * 3 * 9 * 64


def test_time_ms_and_sgemm():
    t = time_ms(lambda: sum(range(1000)), repeats=5, warmup=1)
    assert 0 < t["min"] <= t["median"] <= t["p95"]
    with pytest.raises(ValueError, match="repeats"):
        time_ms(lambda: None, repeats=0)
    s = measure_sgemm(n=128, repeats=2)
    assert s["best_gflops"] == max(s["torch_gflops"], s["numpy_gflops"]) > 0.01


def test_benchmark_cli_small_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "--resolutions",
                "64x96",
                "--backends",
                "onnxruntime,tensorrt",
                "--repeats",
                "2",
                "--warmup",
                "1",
                "--no-pointcloud-baseline",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    (run,) = r["runs"]
    assert run["backend"] == "onnxruntime" and run["resolution"] == [64, 96]
    stages = run["stages_ms"]
    for k in (
        "decode",
        "decode_jpeg",
        "preprocess",
        "inference",
        "postprocess",
        "pointcloud",
        "colorize",
        "messages",
    ):
        assert stages[k] is not None and stages[k] >= 0
    assert run["gflop"] > 0 and run["achieved_gflops"] == pytest.approx(
        run["gflop"] * 1e3 / stages["inference"]
    )
    assert run["speedup_vs_eager"] == pytest.approx(run["eager_torch_ms"] / stages["inference"])
    assert run["peak_rss_mb"] > 50
    assert [s["backend"] for s in r["skipped"]] == ["tensorrt"]  # no TensorRT here
    # the network as the node runs it by default: without the confidence tail
    d = r["cpu"]["default_outputs"]
    assert d["outputs"] == ["depth", "labels", "normals"] and d["process_ms"] > 0
    assert d["all_outputs_process_ms"] > 0 and d["gflops"] > 0
    text = capsys.readouterr().out
    assert "| realtime | 64x96 | onnxruntime |" in text and "skipped tensorrt" in text
    assert format_table(r) in text


def test_benchmark_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        main(["--resolutions", "64by96"])
    with pytest.raises(SystemExit):
        main(["--models", "nonexistent"])
    with pytest.raises(SystemExit):
        main(["--backends", "opencl"])


def test_table_reports_the_ros_baselines_as_ratios(tmp_path):
    from joint_perception.evaluation.benchmark import ros_baselines

    result = {
        "frame_size": [480, 640],
        "frame": "f.png",
        "repeats": 3,
        "runs": [],
        "machine": {"cpu": "cpu", "cpu_count": 2, "load_average_1_5_15_min": [1.0]},
        "sgemm": {"best_gflops": 50.0, "torch_gflops": 50.0, "numpy_gflops": 40.0},
        "baselines": {
            "ros_round_trip": {"direct_ms": 100.0, "ros_p50_ms": 90.0, "middleware_ms": -10.0},
            "queue": {
                "ratio": 4.0,
                "newest": {"mean_ms": 100.0, "p95_ms": 150.0, "missed": 40, "sent": 60},
                "queue10": {"mean_ms": 400.0, "p95_ms": 900.0, "missed": 30, "sent": 60},
            },
        },
    }
    text = format_table(result)
    assert "| 100.0 ms direct | 90.0 ms via ROS | -10.0 ms middleware |" in text
    assert "100.0 ms (150.0; 40) | 400.0 ms (900.0; 30) | 4.0x |" in text
    with pytest.raises(FileNotFoundError, match="bag for the ROS baselines"):
        ros_baselines(tmp_path, tmp_path / "no_bag", 1.0, tmp_path)


def test_benchmark_refuses_a_json_path_that_is_a_directory(tmp_path, capsys):
    """Checked before the benchmark runs (it used to fail after it, with a traceback)."""
    with pytest.raises(SystemExit):
        main(["--json", str(tmp_path)])
    assert "--json" in capsys.readouterr().err
