"""benchmark_cpu: interleaved CPU-time measurement, the node's per-frame work in both
variants (same messages), a real conv as the peak reference. Asserts behaviour, not speed."""

import numpy as np
import pytest

from joint_perception.evaluation import benchmark_cpu as bc
from joint_perception.runtime.factory import create_backend
from joint_perception.runtime.processing import Pipeline


def test_interleaved_cpu_ms_runs_each_callable_in_turn():
    order = []
    out = bc.interleaved_cpu_ms(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, 3, 1
    )
    assert order == ["a", "b"] * 4
    assert set(out) == {"a", "b"}
    assert all(v["thread_ms"] >= 0 and v["process_ms"] >= 0 for v in out.values())
    with pytest.raises(ValueError, match="repeats"):
        bc.interleaved_cpu_ms({"a": lambda: None}, 0)


def test_conv_peak_is_a_measured_convolution():
    p = bc.conv_peak(repeats=2)
    assert p["flops"] == 2 * 9 * 64 * 64 * 56 * 56 and p["gflops"] > 0 and p["threads"] == 1


def test_frame_cpu_both_variants_and_scaling(tiny_model_dir):
    pipe = Pipeline(create_backend(tiny_model_dir, backend="onnxruntime"))
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    K = np.array([[70.0, 0, 39.5], [0, 70.0, 29.5], [0, 0, 1]])
    r = bc.frame_cpu(pipe, rgb, K, repeats=2, warmup=1)
    assert r["size"] == [60, 80] and r["bytes_serialised"] > 60 * 80 * 20
    for v in ("reused", "allocating"):
        assert r[v]["non_network_thread_ms"] > 0
        assert "messages_and_serialise" in r[v]["stages_thread_ms"]
    rows = bc.resolution_scaling(pipe, rgb, K, sizes=((30, 40), (60, 80)), repeats=1)
    assert [row["size"] for row in rows] == [[30, 40], [60, 80]]
    assert all(row["reused_ms_per_mp"] > 0 for row in rows)
    text = bc.format_cpu_tables(
        {"frame": r, "conv_peak": bc.conv_peak(1), "network_gflops": 1.0, "scaling": rows}
    )
    assert "reused" in text and "% of it" in text and "80x60" in text
