"""replay end to end on the real 3-frame sqlite3 bag: output bag, summary, stamps, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.ros
pytest.importorskip("rclpy")

from ros_node_harness import export_tiny_model  # noqa: E402

from joint_perception.evaluation.replay import header_from_cdr, load_input_frames, main  # noqa: E402


def test_header_from_cdr_reads_stamp_and_frame_id():
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.header.frame_id = "cam"
    assert header_from_cdr(serialize_message(msg)) == (12_000_000_345, "cam")
    with pytest.raises(ValueError, match="not a CDR buffer"):
        header_from_cdr(b"\x01\x02")


def test_replay_end_to_end(shared_data, tmp_path):
    bag = shared_data / "bags" / "nyuv2_test3_sqlite3"
    model = export_tiny_model(tmp_path / "model")
    frames, _ = load_input_frames(bag)
    assert len(frames) == 3 and all(f.info_cdr is not None for f in frames)
    out = tmp_path / "out"
    code = main(
        [
            "--bag",
            str(bag),
            "--out",
            str(out),
            "--rate",
            "1",
            "--no-progress",
            "--set",
            f"model:={model}",
            "--set",
            "backend:=onnxruntime",
        ]
    )
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert (s["frames_in"], s["frames_out"], s["frames_dropped"]) == (3, 3, 0)
    assert s["input_stamps_ns"] == sorted(f.stamp_ns for f in frames)
    assert set(s["outputs"]) == {
        "depth/image",
        "depth/camera_info",
        "segmentation/labels",
        "segmentation/camera_info",
        "segmentation/color",
        "normals/image",
        "normals/camera_info",
        "normals/color",
        "points",
    }
    for o in s["outputs"].values():
        assert o["count"] == 3 and o["stamps_match_input"]
        assert o["frame_ids"] == ["camera_color_optical_frame"]
    assert 0 < s["latency_ms"]["p50_ms"] <= s["latency_ms"]["max_ms"]
    assert {"inference", "preprocess", "postprocess", "decode", "publish"} <= set(
        s["stages_p50_ms"]
    )
    m = s["depth_metrics"]
    assert m["frames"] == 3 and m["abs_rel"] > 0 and 0 <= m["delta1"] <= m["delta2"] <= 1
    assert (out / "summary.md").read_text().startswith("# Replay of")
    assert s["node_exit_code"] == 0

    from rosbags.highlevel import AnyReader

    with AnyReader([out / "output"]) as reader:
        topics = {c.topic for c in reader.connections}
        assert "/replay/depth/image" in topics and "/replay/points" in topics
        depth_conn = [c for c in reader.connections if c.topic == "/replay/depth/image"]
        stamps = []
        for conn, _, raw in reader.messages(connections=depth_conn):
            msg = reader.deserialize(raw, conn.msgtype)
            assert msg.encoding == "32FC1" and (msg.height, msg.width) == (480, 640)
            d = np.frombuffer(msg.data, np.float32)
            assert np.isfinite(d).any()
            stamps.append(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)
    assert sorted(stamps) == s["input_stamps_ns"]


def test_replay_loops_the_bag_at_a_fixed_rate(shared_data, tmp_path):
    from joint_perception.data.rosbag_io import bag_sha256

    bag = shared_data / "bags" / "nyuv2_test3_sqlite3"
    model = export_tiny_model(tmp_path / "model")
    out = tmp_path / "loop"
    code = main(
        [
            "--bag",
            str(bag),
            "--out",
            str(out),
            "--rate",
            "8",
            "--frames",
            "10",
            "--labels-dir",
            str(shared_data / "nyuv2_test"),
            "--no-progress",
            "--set",
            f"model:={model}",
            "--set",
            "backend:=onnxruntime",
        ]
    )
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    p = s["performance"]
    # 10 frames from a 3-frame bag, each with its own stamp, sent at 8 Hz
    assert p["NUM_FRAMES_SENT"] == s["frames_in"] == 10
    assert len(set(s["input_stamps_ns"])) == 10
    assert p["MEAN_PLAYBACK_FRAME_RATE"] == pytest.approx(8.0, rel=0.15)
    # missed-frame accounting: every sent frame is either received or missed
    assert p["NUM_MISSED_FRAMES"] == s["frames_dropped"] == 10 - s["frames_out"]
    assert p["NUM_FRAMES_RECEIVED"] == s["frames_out"] >= 8  # a tiny model keeps up
    assert p["MIN_JITTER"] <= p["MEAN_JITTER"] <= p["MAX_JITTER"]
    assert p["FIRST_SENT_RECEIVED_LATENCY"] > 0 and p["P95_LATENCY"] >= p["P50_LATENCY"]
    assert p["NODE_CPU_PERCENT"] > 0 and p["NODE_PEAK_RSS_MB"] > 50
    assert s["bag_sha256"] == bag_sha256(bag)
    assert s["input_resolution"] == [480, 640] and s["network_resolution"] == [64, 80]
    assert s["backend"] == "onnxruntime"
    for o in s["outputs"].values():
        assert o["stamps_match_input"]
    # accuracy: each of the 3 bag frames once, labels paired through the labelled folder
    acc = s["accuracy"]
    assert len(acc["per_frame"]) == 3
    agg = acc["aggregate"]
    assert set(agg["depth_by_range"]) == {"0-2", "2-4", "4-10"}
    assert 0 <= agg["segmentation"]["miou"] <= 1 and agg["normals"]["n_pixels"] > 0
    assert s["depth_metrics"]["frames"] == 3
    html = (out / "report.html").read_text()
    for png in ("latency", "stages", "iou", "depth_by_range", "samples", "pointcloud"):
        assert f"report_files/{png}.png" in html and (out / "report_files" / f"{png}.png").is_file()


def test_peak_search_on_a_node_slowed_on_purpose(shared_data, tmp_path):
    """The peak search finds the limit of a node slowed to D >= 150 ms per frame.

    Bound on the reported peak, for N = 6 frames per trial at rate r (period T = 1/r):

    * the node's worker takes a frame from its newest-frame-only slot, processes it (P > 0)
      and sleeps ``debug_delay_ms``, so it takes frames D = P + 0.150 s >= 0.150 s apart; a
      frame not yet taken when the next one arrives is overwritten (missed);
    * at ``--max-missed 0.05`` a trial passes only with no miss (1 of 6 is 0.167);
    * with D > T the worker falls behind: frame 0 is taken on arrival (the node is idle
      between trials), frame k at k*D, and frame k is missed when frame k+1 arrives first,
      (k+1)*T < k*D. The last frame is never overwritten, so k = N-2 binds: a trial passes
      only if (N-2)*D <= (N-1)*T, i.e.

          r <= (N-1) / ((N-2) * D) <= 5 / (4 * 0.150 s) = 8.33 Hz

      (with equal delivery delays; the processing time P > 0 leaves slack for send jitter).
      1/D = 6.67 Hz is the limit only as N grows: a 180 ms/frame node legally passes
      6.727 Hz with 6 frames.
    * the search (2, 4, 8, 16 Hz, then geometric means, 10 % bracket) can report at most
      8.0 Hz under that bound (8 passes; 16, 11.3, 9.5 and 8.7 fail). test_rates.py checks
      both on a clock-free model of the node. At 2 Hz nothing is missed while D <= 625 ms.
    """
    frames_per_trial, min_frame_s = 6, 0.150
    bound_hz = (frames_per_trial - 1) / ((frames_per_trial - 2) * min_frame_s)
    bag = shared_data / "bags" / "nyuv2_test3_sqlite3"
    model = export_tiny_model(tmp_path / "model")
    out = tmp_path / "peak"
    code = main(
        [
            "--bag",
            str(bag),
            "--out",
            str(out),
            "--peak",
            "--peak-min-rate",
            "2",
            "--peak-max-rate",
            "32",
            "--peak-frames",
            str(frames_per_trial),
            "--max-missed",
            "0.05",
            "--no-report",
            "--no-progress",
            "--set",
            f"model:={model}",
            "--set",
            "backend:=onnxruntime",
            "--set",
            f"debug_delay_ms:={1e3 * min_frame_s}",
        ]
    )
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    peak = s["peak"]
    trials = peak["trials"]
    rates = [t["rate_hz"] for t in trials]
    assert rates[:2] == [2.0, 4.0]  # galloping from the lowest rate
    assert 2.0 <= peak["peak_rate_hz"] <= bound_hz  # 8.33 Hz (docstring)
    assert any(t["missed_fraction"] > 0.05 for t in trials)
    assert s["performance"]["MISSED_FRAME_FRACTION"] <= 0.05  # summary = best passing trial
    assert s["frames_in"] == frames_per_trial


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A finished replay of a 3-frame synthetic bag (96x128) with a tiny model: (args, out)."""
    from joint_perception.data.synthetic_bag import make_synthetic_bag

    root = tmp_path_factory.mktemp("synthetic_replay")
    bag = make_synthetic_bag(root / "bag", frames=3, height=96, width=128, rate_hz=4.0)
    model = export_tiny_model(root / "model")
    out = root / "out"
    args = ["--bag", str(bag), "--out", str(out), "--no-progress", "--no-report"]
    args += ["--set", f"model:={model}", "--set", "backend:=onnxruntime"]
    assert main(args) == 0
    return args, out


def test_the_output_bag_file_is_named_after_its_directory(synthetic_run):
    """The finished bag is ``output/output.mcap`` (recorded as ``output.partial.mcap``) and
    its metadata.yaml names that file: rosbags reads every message back."""
    from rosbags.highlevel import AnyReader

    _, out = synthetic_run
    bag = out / "output"
    assert sorted(p.name for p in bag.iterdir()) == [
        "metadata.yaml",
        "output.mcap",
        "replay_run.json",
    ]
    with AnyReader([bag]) as reader:
        n = sum(1 for _ in reader.messages())
        assert n == reader.message_count > 0
        depth = [c for c in reader.connections if c.topic == "/replay/depth/image"]
        assert sum(1 for _ in reader.messages(connections=depth)) == 3


def test_a_full_output_disk_stops_recording_with_a_clear_error(synthetic_run, capsys):
    """Recording stops before the output disk would have less than --disk-reserve-mb free:
    replay exits 1 naming the cause, removes its partial bag and keeps the earlier run's bag
    and summary (the reserve is set above the free space)."""
    import shutil

    args, out = synthetic_run
    before = {p: p.read_bytes() for p in (out / "summary.json", out / "output" / "replay_run.json")}
    capsys.readouterr()

    free_mb = shutil.disk_usage(out).free / 2**20
    assert main([*args, "--disk-reserve-mb", str(free_mb + 1024)]) == 1
    err = capsys.readouterr().err
    assert "replay: error:" in err and "recording the output bag stopped after 0 MiB" in err
    assert "kept free (--disk-reserve-mb)" in err and "is untouched" in err
    assert not (out / "output.partial").exists()
    assert {p: p.read_bytes() for p in before} == before


def _cli_error(argv, capsys) -> str:
    """The replay parser's error (exit status 2) for ``argv`` (no node is started)."""
    from joint_perception.evaluation.replay import cli

    ap = cli.build_parser()
    with pytest.raises(SystemExit) as exc:
        cli._check(ap, ap.parse_args(argv))
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rate", "nan"], "--rate must be a finite number > 0"),
        (["--rate", "inf"], "--rate must be a finite number > 0"),
        (["--set", "backend=torch"], "write NAME:=VALUE"),
        (["--set", "bogus:=1"], "the perception node has no parameter bogus"),
        (["--set", "max_dept:=4"], "max_dept (did you mean max_depth?)"),
    ],
)
def test_replay_refuses_bad_rates_and_node_parameters_up_front(tmp_path, capsys, extra, message):
    argv = ["--bag", str(tmp_path), "--out", str(tmp_path / "o"), *extra]
    assert message in _cli_error(argv, capsys)


def test_replay_checks_a_parameter_file_as_rcl_would_apply_it(tmp_path, capsys):
    """A section for another node name (rclpy would ignore it), unknown names in a section
    that applies, and YAML rcl cannot parse are refused; '/**' and '/**/perception_node'
    sections with the node's parameters pass."""
    base = ["--bag", str(tmp_path), "--out", str(tmp_path / "o"), "--params"]
    f = tmp_path / "p.yaml"
    f.write_text("perception_node:\n  ros__parameters:\n    max_depth: 5.0\n")
    assert "no section applies to the replay's node /replay/perception_node" in _cli_error(
        [*base, str(f)], capsys
    )
    f.write_text("/**:\n  ros__parameters:\n    backnd: torch\n")
    assert "no parameter backnd (did you mean backend?)" in _cli_error([*base, str(f)], capsys)
    f.write_text("/**:\n  ros__parameters: [\n")
    assert "not valid YAML" in _cli_error([*base, str(f)], capsys)
    f.write_text("/**:\n  max_depth: 5.0\n")
    assert "not a ROS 2 parameter file" in _cli_error([*base, str(f)], capsys)

    from joint_perception.evaluation.replay import cli

    f.write_text(
        "/**:\n  ros__parameters:\n    qos:\n      input:\n        depth: 2\n"
        "/**/perception_node:\n  ros__parameters:\n    max_depth: 5.0\n"
        "/other_node:\n  ros__parameters:\n    anything: 1\n"
    )
    ap = cli.build_parser()
    cli._check(ap, ap.parse_args([*base, str(f)]))  # no SystemExit


def test_replay_needs_the_camera_info_topic_and_a_named_depth_topic(tmp_path):
    """A bag without the CameraInfo topic is refused before the node starts (it would skip
    every frame); a depth topic named on the command line must exist (the default one may
    be absent: no depth metrics)."""
    from joint_perception.data.synthetic_bag import make_synthetic_bag
    from joint_perception.evaluation.replay.options import ReplayOptions
    from joint_perception.evaluation.replay.scoring import _references
    from joint_perception.evaluation.replay.topics import ReplayTopics

    bag = make_synthetic_bag(tmp_path / "bag", frames=1, height=48, width=64)
    with pytest.raises(ValueError, match="no topic '/nope' \\(bag has: .*camera_info"):
        load_input_frames(bag, ReplayTopics(camera_info="/nope"))
    named = ReplayOptions(bag=bag, out=tmp_path / "o", topics=ReplayTopics(depth="/nope"))
    with pytest.raises(ValueError, match="no depth on '/nope'"):
        _references(named, 40)
    assert _references(ReplayOptions(bag=bag, out=tmp_path / "o"), 40) is not None


def test_a_run_without_any_output_fails_and_keeps_the_earlier_results(synthetic_run, capsys):
    """Every frame skipped by the node (here: a 16UC1 depth topic replayed as the camera)
    is a failed run: exit 1 with the node's warnings, the earlier bag and summary kept."""
    from joint_perception.data.rosbag_io import BagTopics

    args, out = synthetic_run
    before = {p: p.read_bytes() for p in (out / "summary.json", out / "output" / "replay_run.json")}
    capsys.readouterr()
    assert main([*args, "--image-topic", BagTopics.depth]) == 1
    err = capsys.readouterr().err
    assert "the node published no output for the 3 frames sent" in err
    assert "16UC1" in err, err
    assert not (out / "output.partial").exists()
    assert {p: p.read_bytes() for p in before} == before
