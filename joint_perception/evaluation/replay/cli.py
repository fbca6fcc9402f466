"""The ``replay`` command line: arguments -> :class:`ReplayOptions` -> run -> a short printout.

replay --bag ../shared/data/bags/nyuv2_test10_mcap --out out/replay [--rate 10]
       [--frames 100] [--peak [--max-missed 0.05]] [--labels-dir ../shared/data/nyuv2_test |
       --labels-topic TOPIC]
       [--params config/perception.yaml] [--set backend:=onnxruntime] [--compressed]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from joint_perception.evaluation.replay.markdown import fmt, versus_baselines_markdown
from joint_perception.evaluation.replay.node_process import NODE_NAME
from joint_perception.evaluation.replay.options import ReplayOptions
from joint_perception.evaluation.replay.run import replay
from joint_perception.evaluation.replay.topics import ReplayTopics, namespaced
from joint_perception.runtime.threads import add_thread_arguments, thread_options

DESCRIPTION = (
    "``replay``: play a rosbag2 through the running perception node over real ROS, measure "
    "it the way ros2_benchmark does, evaluate the outputs and report."
)


def _add_run_arguments(ap: argparse.ArgumentParser) -> None:
    """Bag, output, rate, frame count, peak search and node parameters."""
    ap.add_argument("--bag", required=True, type=Path, help="rosbag2 directory (sqlite3 or MCAP)")
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument(
        "--rate", type=float, default=None, help="publish rate in Hz (default: the recorded rate)"
    )
    ap.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames to send, looping the bag (default: each bag frame once)",
    )
    ap.add_argument(
        "--peak",
        action="store_true",
        help="search the peak rate with at most --max-missed missed frames",
    )
    ap.add_argument(
        "--max-missed",
        type=float,
        default=0.05,
        help="accepted missed-frame fraction for --peak (default 0.05)",
    )
    ap.add_argument("--peak-min-rate", type=float, default=2.0)
    ap.add_argument("--peak-max-rate", type=float, default=64.0)
    ap.add_argument("--peak-frames", type=int, default=30, help="frames per --peak trial")
    ap.add_argument("--params", type=Path, default=None, help="node parameter YAML")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="node parameter override (repeatable)",
    )
    add_thread_arguments(ap)  # the node's intra_op_threads / intra_op_spinning parameters


def _add_topic_arguments(ap: argparse.ArgumentParser) -> None:
    """Input topics, ground truth and output switches."""
    ap.add_argument("--compressed", action="store_true", help="replay the compressed images")
    ap.add_argument("--image-topic", default=ReplayTopics.image)
    ap.add_argument("--compressed-topic", default=ReplayTopics.compressed)
    ap.add_argument("--camera-info-topic", default=ReplayTopics.camera_info)
    ap.add_argument(
        "--depth-topic",
        default=ReplayTopics.depth,
        help="ground-truth depth topic (16UC1 mm or 32FC1 m)",
    )
    ap.add_argument(
        "--labels-dir",
        type=Path,
        default=None,
        help="labelled folder paired with the bag frames (e.g. "
        "../shared/data/nyuv2_test) for segmentation metrics",
    )
    ap.add_argument(
        "--labels-topic",
        default=None,
        help="ground-truth labels topic in the bag (mono8/mono16 class ids)",
    )
    ap.add_argument("--no-report", action="store_true", help="skip report.html/report.md")
    ap.add_argument(
        "--disk-reserve-mb",
        type=float,
        default=ReplayOptions.disk_reserve_mb,
        help="free space kept on the output disk: recording stops before less is left, and "
        "replay fails, removing its partial bag (default %(default)g MiB; every output of a "
        "640x480 frame is ~12 MB)",
    )
    ap.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The ``replay`` argument parser."""
    ap = argparse.ArgumentParser(prog="replay", description=DESCRIPTION)
    _add_run_arguments(ap)
    _add_topic_arguments(ap)
    return ap


def _check(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Exit through ``ap.error`` (code 2) on values the parser alone does not refuse."""
    if a.rate is not None and not (math.isfinite(a.rate) and a.rate > 0):
        ap.error(f"--rate must be a finite number > 0, got {a.rate}")
    if a.frames is not None and a.frames < 1:
        ap.error(f"--frames must be >= 1, got {a.frames}")
    if not 0 <= a.max_missed < 1:
        ap.error(f"--max-missed must be in [0, 1), got {a.max_missed}")
    if not (0 < a.peak_min_rate <= a.peak_max_rate and math.isfinite(a.peak_max_rate)):
        ap.error("need 0 < --peak-min-rate <= --peak-max-rate")
    if a.peak_frames < 3:
        ap.error("--peak-frames must be >= 3")
    if a.labels_dir is not None and a.labels_topic is not None:
        ap.error("give either --labels-dir or --labels-topic, not both")
    if a.intra_op_threads < 0:
        ap.error(f"--intra-op-threads must be >= 0, got {a.intra_op_threads}")
    if a.disk_reserve_mb < 0:
        ap.error(f"--disk-reserve-mb must be >= 0, got {a.disk_reserve_mb}")
    if a.params is not None and not a.params.is_file():
        ap.error(f"--params: no such file {a.params}")
    _check_node_parameters(ap, a)


def _check_node_parameters(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse ``--set`` / ``--params`` the node would not get: rcl cannot parse them, or rclpy
    would drop them without a word (unknown names, a file section for another node)."""
    from joint_perception.ros.parameters import unknown_parameters

    names = []
    for ov in a.set:
        name, sep, _ = ov.partition(":=")
        if not sep or not name.strip():
            ap.error(f"--set {ov!r}: write NAME:=VALUE (ROS 2's -p syntax)")
        names.append(name.strip())
    if a.params is not None:
        names += _params_file_names(ap, a.params)
    unknown = unknown_parameters(names)
    if unknown:
        ap.error(f"the perception node has no parameter {', '.join(unknown)}")


def _params_file_names(ap: argparse.ArgumentParser, path: Path) -> list[str]:
    """Parameter names (nested keys joined with dots) of the sections of a ROS 2 parameter
    file that apply to the replay's node (``/**``, ``/**/perception_node`` or its full name);
    ``ap.error`` for a file rcl cannot use or that has no such section."""
    import yaml

    from joint_perception.ros.parameters import flatten_parameters, node_key_matches

    fqn = namespaced(ReplayOptions.namespace, NODE_NAME)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        ap.error(f"--params {path}: not valid YAML ({str(exc).splitlines()[0]})")
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and "ros__parameters" in v for v in data.values()
    ):
        ap.error(f"--params {path}: not a ROS 2 parameter file ('/**: ros__parameters: {{...}}')")
    applying = [k for k in data if node_key_matches(str(k), fqn)]
    if not applying:
        ap.error(
            f"--params {path}: no section applies to the replay's node {fqn} (sections: "
            f"{', '.join(map(str, data))}); name it '/**' or '/**/{NODE_NAME}'"
        )
    return [n for k in applying for n in flatten_parameters(data[k]["ros__parameters"] or {})]


def _thread_overrides(a: argparse.Namespace) -> list[str]:
    """``--intra-op-threads`` / ``--intra-op-spinning`` as node parameter overrides (only
    when given: the node's defaults are the same machine defaults)."""
    opts = thread_options(a)
    out = []
    if opts["intra_op_threads"]:
        out.append(f"intra_op_threads:={opts['intra_op_threads']}")
    if opts["intra_op_spinning"]:
        out.append("intra_op_spinning:=true")
    return out


def _options(a: argparse.Namespace) -> ReplayOptions:
    topics = ReplayTopics(a.image_topic, a.compressed_topic, a.camera_info_topic, a.depth_topic)
    return ReplayOptions(
        bag=a.bag,
        out=a.out,
        rate_hz=a.rate,
        params_file=a.params,
        overrides=[*a.set, *_thread_overrides(a)],
        topics=topics,
        compressed=a.compressed,
        progress=not a.no_progress,
        frames=a.frames,
        labels_dir=a.labels_dir,
        labels_topic=a.labels_topic,
        report=not a.no_report,
        peak=a.peak,
        max_missed=a.max_missed,
        peak_min_rate_hz=a.peak_min_rate,
        peak_max_rate_hz=a.peak_max_rate,
        peak_frames=a.peak_frames,
        disk_reserve_mb=a.disk_reserve_mb,
    )


def _print_summary(s: dict, a: argparse.Namespace) -> None:
    lat = s["latency_ms"]
    perf = s["performance"]
    print(
        f"frames in {s['frames_in']} out {s['frames_out']} dropped {s['frames_dropped']}; "
        f"latency p50 {fmt(lat['p50_ms'])} ms p95 {fmt(lat['p95_ms'])} ms; "
        f"MEAN_FRAME_RATE {fmt(perf['MEAN_FRAME_RATE'])} Hz; node CPU "
        f"{fmt(perf.get('NODE_CPU_PERCENT'))} %"
    )
    if s.get("peak"):
        print(f"peak rate {fmt(s['peak']['peak_rate_hz'])} Hz (<= {a.max_missed:g} missed)")
    versus = versus_baselines_markdown(s)
    if versus:
        print("\n".join(versus[1:]))
    report = f"\nreport: {s['report']}" if s.get("report") else ""
    print(
        f"output bag: {s['output_bag']}\nsummary: {a.out / 'summary.json'}, "
        f"{a.out / 'summary.md'}" + report
    )


def main(argv: list[str] | None = None) -> int:
    """Console script ``replay``; returns the exit code: 0, or 1 for a bad bag, topics or
    labelled folder, a node failure or an output disk that filled up; 130 when interrupted.
    Bad arguments exit through argparse (status 2)."""
    ap = build_parser()
    a = ap.parse_args(argv)
    _check(ap, a)
    try:
        s = replay(_options(a))
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"replay: interrupted; the node was stopped; {a.out}/output and summary.* are the "
            "previous run's (the report may already be this run's; the partial bag is "
            "discarded at the next start)",
            file=sys.stderr,
        )
        return 130
    _print_summary(s, a)
    return 0
