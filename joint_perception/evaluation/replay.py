"""``replay``: play a rosbag2 through the running perception node over real ROS, measure it the
way ros2_benchmark does, evaluate the outputs and report.

    replay --bag ../shared/data/bags/nyuv2_test10_mcap --out out/replay [--rate 10]
           [--frames 100] [--peak [--max-missed 0.05]] [--labels-dir ../shared/data/nyuv2_test |
           --labels-topic TOPIC]
           [--params config/perception.yaml] [--set backend:=onnxruntime] [--compressed]

Steps (each a separate piece, reused by the fixed-rate run and the peak-throughput search):

1. :func:`load_input_frames` reads the bag's image (or compressed image) and camera_info
   messages as raw CDR with ``rosbags`` (sqlite3 or MCAP) — published unchanged, so header
   stamps and frame_ids are the recorded ones (looped passes are re-stamped,
   :func:`joint_perception.evaluation.rates.loop_schedule`).
2. :class:`NodeProcess` starts ``perception_node`` as a subprocess in a private namespace
   with loopback-only DDS (:func:`joint_perception.ros.local_dds.loopback_environment`),
   remapping its inputs to the bag's topics; stops it with SIGINT.
3. :class:`Recorder` (an rclpy node) publishes the inputs, subscribes to every output topic
   (reliable) and ``/diagnostics``, writes each received message to the output rosbag2 (MCAP)
   and notes its wall-clock receive time per header stamp.
4. :class:`ReplaySession` runs schedules through them: :func:`publish_frames` paces the sends
   (recorded rate or ``--rate`` Hz, absolute deadlines), the node's CPU time and memory are
   sampled from ``/proc`` meanwhile (:class:`joint_perception.evaluation.rates.ProcessMonitor`).
   ``--peak`` runs bounded trials at galloping/bisected rates
   (:func:`joint_perception.evaluation.rates.find_peak_rate`).
5. :func:`summarise` computes frames in/out/dropped, end-to-end latency (send wall time ->
   receive wall time, paired by header stamp), the ros2_benchmark fields
   (:func:`joint_perception.evaluation.rates.performance_fields`), per-stage times (from the
   node's diagnostics), device/backend/model/resolutions and the bag's SHA-256;
   :mod:`joint_perception.evaluation.accuracy` adds depth (overall and by distance),
   segmentation (``--labels-topic`` or ``--labels-dir``) and normal metrics from the output bag; ``DIR/summary.json``,
   ``DIR/summary.md``, ``DIR/report.html`` + ``DIR/report.md``
   (:mod:`joint_perception.evaluation.report`) are written atomically; the bag goes to
   ``DIR/output/``.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from joint_perception.data.rosbag_io import BagTopics
from joint_perception.evaluation.rates import (
    ProcessMonitor,
    find_peak_rate,
    loop_schedule,
    pace_schedule,
    performance_fields,
    restamp_cdr,
)
from joint_perception.io_utils import atomic_write_json, atomic_write_text
from joint_perception.ros.local_dds import loopback_environment

DEFAULT_NAMESPACE = "/replay"
OUTPUT_TOPICS = {  # relative output topic -> ROS type name
    "depth/image": "sensor_msgs/msg/Image",
    "depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "segmentation/labels": "sensor_msgs/msg/Image",
    "segmentation/color": "sensor_msgs/msg/Image",
    "normals/image": "sensor_msgs/msg/Image",
    "points": "sensor_msgs/msg/PointCloud2",
    "confidence": "sensor_msgs/msg/Image",
}
DIAGNOSTICS_TOPIC = "/diagnostics"


@dataclass
class ReplayTopics:
    """Bag topics replay publishes from and scores against; defaults are the RealSense-style
    names of :class:`joint_perception.data.rosbag_io.BagTopics` (as in ../shared/data/bags)."""

    image: str = BagTopics.color
    compressed: str = BagTopics.color_compressed
    camera_info: str = BagTopics.color_info
    depth: str = BagTopics.depth


@dataclass
class InputFrame:
    """One image to publish with its CameraInfo (same stamp, else the latest before), raw CDR."""

    bag_time_ns: int
    stamp_ns: int
    frame_id: str
    image_cdr: bytes
    info_cdr: bytes | None


def header_from_cdr(data: bytes | memoryview) -> tuple[int, str]:
    """``(stamp_ns, frame_id)`` of a CDR-serialised message that starts with std_msgs/Header.

    Every sensor_msgs type used here starts with a Header: after the 4-byte encapsulation
    (CDR little- or big-endian), int32 sec, uint32 nanosec, uint32 length + frame_id bytes.

    Raises:
        ValueError: buffer too short or unknown encapsulation.
    """
    buf = bytes(data[:4096])
    if len(buf) < 16 or buf[0] != 0 or buf[1] not in (0, 1):
        raise ValueError("not a CDR buffer with a std_msgs/Header")
    endian = "<" if buf[1] == 1 else ">"
    sec, nsec, n = struct.unpack_from(endian + "iII", buf, 4)
    frame_id = buf[16:16 + max(n - 1, 0)].decode("utf-8", "replace")
    return sec * 1_000_000_000 + nsec, frame_id


def load_input_frames(bag: str | os.PathLike, topics: ReplayTopics | None = None,
                      compressed: bool = False) -> tuple[list[InputFrame], str]:
    """Read the images (and the CameraInfo before each) of a rosbag2, as raw CDR.

    Returns:
        ``(frames, image_msgtype)`` in bag order; ``image_msgtype`` is
        ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.

    Raises:
        FileNotFoundError: no such bag.
        ValueError: the image topic is not in the bag (message lists its topics).
    """
    from rosbags.highlevel import AnyReader

    topics = topics or ReplayTopics()
    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    image_topic = topics.compressed if compressed else topics.image
    frames: list[InputFrame] = []
    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic in (image_topic, topics.camera_info)]
        if not any(c.topic == image_topic for c in conns):
            have = ", ".join(sorted({c.topic for c in reader.connections}))
            raise ValueError(f"{bag}: no topic {image_topic!r} (bag has: {have})")
        msgtype = next(c.msgtype for c in conns if c.topic == image_topic)
        infos: dict[int, bytes] = {}
        images: list[tuple[int, int, str, bytes, bytes | None]] = []
        last_info: bytes | None = None
        for conn, t, raw in reader.messages(connections=conns):
            stamp, frame_id = header_from_cdr(raw)
            if conn.topic == topics.camera_info:
                last_info = infos[stamp] = bytes(raw)
            else:
                images.append((t, stamp, frame_id, bytes(raw), last_info))
    # CameraInfo with the image's stamp (drivers may write it just after the image), else the
    # latest one before it, else the first one in the bag.
    first_info = next(iter(infos.values()), None)
    for t, stamp, frame_id, raw, before in images:
        info = infos.get(stamp, before if before is not None else first_info)
        frames.append(InputFrame(t, stamp, frame_id, raw, info))
    return frames, msgtype




class NodeProcess:
    """``perception_node`` in a subprocess on loopback DDS; stopped with SIGINT.

    Args:
        namespace: node namespace (outputs appear under it).
        remaps: ``{relative input name: absolute bag topic}``.
        params_file: optional ROS 2 parameter YAML.
        overrides: ``["name:=value", ...]`` passed as ``-p``.
        log_path: file receiving the node's stdout and stderr.
        domain_id: ROS_DOMAIN_ID shared with the recorder.
    """

    def __init__(self, namespace: str, remaps: dict[str, str], params_file: str | None,
                 overrides: list[str], log_path: Path, domain_id: int) -> None:
        cmd = [sys.executable, "-m", "joint_perception.ros.perception_node", "--ros-args",
               "-r", f"__ns:={namespace}"]
        for src, dst in remaps.items():
            cmd += ["-r", f"{src}:={dst}"]
        if params_file:
            cmd += ["--params-file", str(params_file)]
        for ov in overrides:
            cmd += ["-p", ov]
        self.cmd = cmd
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=loopback_environment(domain_id))

    def check_alive(self) -> None:
        """Raise RuntimeError with the node's log tail if it exited."""
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"perception_node exited with code {self.proc.returncode}:\n{tail}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT, wait ``timeout`` s (then SIGKILL); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def get_message(msgtype: str):
    """The rclpy message class of ``pkg/msg/Name`` (rosidl_runtime_py is not a wheel here)."""
    import importlib

    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class Recorder:
    """An rclpy node that publishes the inputs and records every output topic to a rosbag2.

    Messages are kept as raw CDR (no deserialisation on the hot path); :attr:`received` maps
    topic -> {stamp_ns: wall time of arrival}. The callbacks only note the arrival and queue
    the message: a writer thread writes ``bag_dir`` (MCAP), so that writing ~12 MB of outputs
    per 640x480 frame (about 35 ms here) neither delays the arrival times of the following
    messages nor, through reliable QoS back-pressure, the node. Call :meth:`close` to finish
    the bag (it writes what is still queued).
    """

    def __init__(self, context, namespace: str, input_topics: dict[str, str], image_msgtype: str,
                 bag_dir: Path) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.node = Node("replay_recorder", context=context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(get_message(image_msgtype),
                                                    input_topics["image"], reliable)
        self.pub_info = self.node.create_publisher(get_message("sensor_msgs/msg/CameraInfo"),
                                                   input_topics["camera_info"], reliable)
        store = get_typestore(Stores.ROS2_KILTED)
        self._writer = Writer(bag_dir, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._write_thread = threading.Thread(target=self._write_loop, name="replay_bag_writer",
                                              daemon=True)
        self._write_thread.start()
        self._lock = threading.Lock()
        self.received: dict[str, dict[int, float]] = defaultdict(dict)
        self.frame_ids: dict[str, set[str]] = defaultdict(set)
        self.diagnostics: list[tuple[float, bytes]] = []
        self.subs = {}
        self.output_topics = {}
        for rel, msgtype in OUTPUT_TOPICS.items():
            topic = f"{namespace.rstrip('/')}/{rel}"
            self.output_topics[rel] = topic
            conn = self._writer.add_connection(topic, msgtype, typestore=store)
            self.subs[rel] = self.node.create_subscription(
                get_message(msgtype), topic, self._callback(rel, conn), reliable, raw=True)
        diag_conn = self._writer.add_connection(
            DIAGNOSTICS_TOPIC, "diagnostic_msgs/msg/DiagnosticArray", typestore=store)
        self.node.create_subscription(
            get_message("diagnostic_msgs/msg/DiagnosticArray"), DIAGNOSTICS_TOPIC,
            self._diag_callback(diag_conn), QoSProfile(depth=10), raw=True)
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._spin = threading.Thread(target=self._executor.spin, daemon=True)
        self._spin.start()

    def _callback(self, rel, conn):
        def cb(raw: bytes) -> None:
            now = time.time()
            stamp, frame_id = header_from_cdr(raw)
            with self._lock:
                self.received[rel].setdefault(stamp, now)
                self.frame_ids[rel].add(frame_id)
            self._queue.put((conn, time.time_ns(), raw))
        return cb

    def _diag_callback(self, conn):
        def cb(raw: bytes) -> None:
            with self._lock:
                self.diagnostics.append((time.time(), raw))
            self._queue.put((conn, time.time_ns(), raw))
        return cb

    def _write_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            self._writer.write(*item)

    def matched(self) -> bool:
        """Inputs have a subscriber and at least one output has a publisher."""
        return (self.pub_image.get_subscription_count() > 0
                and self.pub_info.get_subscription_count() > 0
                and any(s.get_publisher_count() > 0 for s in self.subs.values()))

    def active_outputs(self) -> list[str]:
        """Relative output topics that the node publishes."""
        return [rel for rel, s in self.subs.items() if s.get_publisher_count() > 0]

    def arrivals(self, rel: str) -> dict[int, float]:
        """A copy of ``{stamp ns: arrival wall time}`` of output ``rel`` (thread-safe)."""
        with self._lock:
            return dict(self.received.get(rel, {}))

    def count(self, rel: str, stamps=None) -> int:
        """Messages received on ``rel`` (only those whose stamp is in ``stamps``, if given)."""
        with self._lock:
            got = self.received.get(rel, {})
            return len(got) if stamps is None else sum(1 for s in stamps if s in got)

    def close(self) -> None:
        """Stop receiving, write the queued messages and close the bag."""
        self._executor.shutdown()
        self._spin.join(5)
        self._queue.put(None)
        self._write_thread.join()
        self._writer.close()
        self.node.destroy_node()



def send_due_times(schedule: list[tuple[int, int]], rate_hz: float | None) -> list[float]:
    """Offsets (s) at which to send each scheduled frame: ``i / rate_hz``, or, without a rate,
    the recorded timing (header stamps relative to the first scheduled one; looped passes keep
    the bag's frame spacing)."""
    if rate_hz:
        return [i / rate_hz for i in range(len(schedule))]
    if not schedule:
        return []
    first = schedule[0][1]
    return [(stamp - first) * 1e-9 for _, stamp in schedule]


def publish_frames(recorder: Recorder, frames: list[InputFrame], rate_hz: float | None = None,
                   progress: bool = True, schedule: list[tuple[int, int]] | None = None
                   ) -> dict[int, float]:
    """Publish each scheduled frame's CameraInfo then image, paced by
    :func:`joint_perception.evaluation.rates.pace_schedule` (absolute deadlines).

    Args:
        recorder: publishes the inputs.
        frames: the bag's frames.
        rate_hz: fixed rate, or None for the recorded timing.
        progress: tqdm progress bar.
        schedule: ``[(frame index, header stamp ns), ...]`` from
            :func:`joint_perception.evaluation.rates.loop_schedule` (default: every frame once,
            recorded stamps). A frame sent with another stamp than recorded is re-stamped
            (image and CameraInfo shifted alike) so that outputs pair with sends by stamp.

    Returns:
        ``{header stamp ns: wall time (s) just before the image was published}``.
    """
    from tqdm import tqdm

    if schedule is None:
        schedule = loop_schedule([f.stamp_ns for f in frames], len(frames)) if frames else []
    sent: dict[int, float] = {}
    bar = tqdm(total=len(schedule), desc="replay", unit="frame", disable=not progress)

    def publish(i: int) -> None:
        idx, stamp = schedule[i]
        frame = frames[idx]
        image, info = frame.image_cdr, frame.info_cdr
        if stamp != frame.stamp_ns:
            image = restamp_cdr(image, stamp)
            if info is not None:
                info = restamp_cdr(info, header_from_cdr(info)[0] + stamp - frame.stamp_ns)
        if info is not None:
            recorder.pub_info.publish(info)
        sent[stamp] = time.time()
        recorder.pub_image.publish(image)
        bar.update()

    try:
        pace_schedule(send_due_times(schedule, rate_hz), publish)
    finally:
        bar.close()
    return sent


def _percentiles(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None, "mean_ms": None}
    a = np.asarray(values_ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "max_ms": float(a.max()), "mean_ms": float(a.mean())}


def _last_diagnostics(recorder: Recorder, node_fqn: str) -> dict[str, str]:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.serialization import deserialize_message

    from joint_perception.ros.diagnostics import status_values

    for _, raw in reversed(recorder.diagnostics):
        arr = deserialize_message(raw, DiagnosticArray)
        for status in arr.status:
            if status.name.endswith(node_fqn):
                return status_values(status)
    return {}


def _image_size(image_cdr: bytes, msgtype: str) -> list[int] | None:
    """[height, width] of a raw Image (None for CompressedImage, whose size needs decoding)."""
    if not msgtype.endswith("/Image"):
        return None
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    msg = deserialize_message(image_cdr, Image)
    return [int(msg.height), int(msg.width)]


def _model_metadata(diag: dict[str, str]):
    """The node's model metadata, from the path in its diagnostics (``"arch (path)"``)."""
    from joint_perception.metadata import load_metadata

    m = re.search(r"\((.+)\)\s*$", diag.get("model", ""))
    if not m:
        return None
    try:
        return load_metadata(m.group(1))
    except (FileNotFoundError, ValueError):
        return None


def summarise(frames: list[InputFrame], sent: dict[int, float], recorder: Recorder,
              node_fqn: str, elapsed_s: float, image_msgtype: str = "sensor_msgs/msg/Image",
              process: dict | None = None, all_sent: set[int] | None = None) -> dict:
    """The replay summary (JSON-ready dict) of the frames in ``sent``.

    Keys: frames in/out/dropped, per-output topic checks, latency percentiles, node stage
    times, ``performance`` (the ros2_benchmark fields of
    :func:`joint_perception.evaluation.rates.performance_fields` plus the node's CPU and
    memory from ``process``), device/backend/model and input/network resolution.
    Accuracy is added by :func:`replay` from the output bag. ``all_sent``: every stamp sent
    in the session (peak trials), for the "stamps match the input" check; default ``sent``.
    """
    all_sent = set(sent) if all_sent is None else set(all_sent)
    active = recorder.active_outputs()
    primary = "depth/image" if "depth/image" in active else (active[0] if active else None)
    arrivals = {rel: recorder.arrivals(rel) for rel in active}
    received = {rel: {s: t for s, t in arrivals[rel].items() if s in sent} for rel in active}
    out_stamps = set(received.get(primary, {})) if primary else set()
    latency = [1e3 * (received[primary][s] - sent[s]) for s in sorted(out_stamps)]
    all_out = [s for s in sent if all(s in received[rel] for rel in active)]
    latency_all = [1e3 * (max(received[rel][s] for rel in active) - sent[s]) for s in all_out]

    diag = _last_diagnostics(recorder, node_fqn)
    stages = {k[len("stage_"):-len("_p50_ms")]: float(v) for k, v in diag.items()
              if k.startswith("stage_") and k.endswith("_p50_ms")}
    input_ids = sorted({f.frame_id for f in frames})
    perf = performance_fields(sent, received.get(primary, {}))
    if process:
        perf.update(NODE_CPU_PERCENT=process["cpu_percent"],
                    NODE_PEAK_RSS_MB=process["peak_rss_mb"],
                    NODE_MAX_SAMPLED_RSS_MB=process["max_sampled_rss_mb"])
    meta = _model_metadata(diag)
    return {
        "frames_in": len(sent),
        "frames_out": len(out_stamps),
        "frames_dropped": len(sent) - len(out_stamps),
        "unexpected_stamps": sum(len(set(arrivals[rel]) - all_sent)
                                 for rel in active),
        "elapsed_s": elapsed_s,
        "input_stamps_ns": sorted(sent),
        "input_frame_ids": input_ids,
        "outputs": {rel: {"topic": recorder.output_topics[rel], "count": len(received[rel]),
                          "frame_ids": sorted(recorder.frame_ids.get(rel, set())),
                          "stamps_match_input": set(arrivals[rel]) <= all_sent}
                    for rel in active},
        "primary_output": primary,
        "latency_ms": _percentiles(latency),
        "latency_all_outputs_ms": _percentiles(latency_all),
        "stages_p50_ms": stages,
        "performance": perf,
        "process_monitor": process,
        "device": diag.get("device"),
        "backend": diag.get("backend"),
        "model": diag.get("model"),
        "input_resolution": _image_size(frames[0].image_cdr, image_msgtype) if frames else None,
        "network_resolution": [meta.input_height, meta.input_width] if meta else None,
        "node": {k: diag[k] for k in ("backend", "backend_reason", "device", "model",
                                      "frames_received", "frames_processed", "frames_dropped",
                                      "frames_skipped") if k in diag},
    }


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def summary_markdown(s: dict) -> str:
    """Human-readable Markdown of :func:`summarise`'s dict."""
    lines = [f"# Replay of `{s.get('bag', '?')}`", "",
             f"Frames in {s['frames_in']}, out {s['frames_out']}, dropped {s['frames_dropped']}"
             f" ({s['elapsed_s']:.1f} s).", "",
             "| latency (ms) | p50 | p95 | max |", "|---|---|---|---|"]
    for key, label in (("latency_ms", f"send -> {s['primary_output']}"),
                       ("latency_all_outputs_ms", "send -> all outputs")):
        lat = s[key]
        lines.append(f"| {label} | {_fmt(lat['p50_ms'])} | {_fmt(lat['p95_ms'])} | "
                     f"{_fmt(lat['max_ms'])} |")
    if s.get("performance"):
        lines += ["", "| ros2_benchmark field | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in s["performance"].items()]
    lines += ["", "| stage | p50 (ms) |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in s["stages_p50_ms"].items()]
    lines += ["", "| output topic | messages | frame_id | stamps = input |", "|---|---|---|---|"]
    lines += [f"| `{o['topic']}` | {o['count']} | {', '.join(o['frame_ids'])} | "
              f"{o['stamps_match_input']} |" for o in s["outputs"].values()]
    if s.get("depth_metrics"):
        lines += ["", "| depth metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in s["depth_metrics"].items()]
    lines += _versus_baselines_markdown(s)
    if s.get("peak"):
        p = s["peak"]
        lines += ["", f"Peak throughput: {_fmt(p['peak_rate_hz'])} Hz with at most "
                  f"{100 * p['max_missed']:g} % missed frames.", "",
                  "| trial rate (Hz) | missed fraction | MEAN_FRAME_RATE | mean latency (ms) |",
                  "|---|---|---|---|"]
        lines += [f"| {_fmt(t['rate_hz'])} | {_fmt(t['missed_fraction'])} | "
                  f"{_fmt(t['MEAN_FRAME_RATE'])} | {_fmt(t['MEAN_LATENCY'])} |"
                  for t in p["trials"]]
    setup = [f"{k} = {s[k]}" for k in ("device", "backend", "model", "input_resolution",
                                       "network_resolution", "bag_sha256") if s.get(k)]
    if setup:
        lines += ["", "Set-up: " + "; ".join(setup)]
    node = s.get("node", {})
    if node:
        lines += ["", "Node: " + "; ".join(f"{k} = {v}" for k, v in node.items())]
    return "\n".join(lines) + "\n"


def _versus_baselines_markdown(s: dict) -> list[str]:
    """Markdown lines of the model-vs-baselines table (empty without accuracy)."""
    from joint_perception.evaluation.accuracy import baseline_table

    versus = baseline_table(((s.get("accuracy") or {}).get("aggregate")) or {})
    if not versus:
        return []
    head, rows = versus
    return (["", "Model vs trivial baselines (constant depth, layout band; no test ground truth):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in rows])


def write_summary(out_dir: Path, summary: dict) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` atomically; returns their paths."""
    return (atomic_write_json(out_dir / "summary.json", summary),
            atomic_write_text(out_dir / "summary.md", summary_markdown(summary)))


@dataclass
class ReplayOptions:
    """Everything :func:`replay` needs; mirrors the command line."""

    bag: Path
    out: Path
    rate_hz: float | None = None
    params_file: Path | None = None
    overrides: list[str] = field(default_factory=list)
    topics: ReplayTopics = field(default_factory=ReplayTopics)
    compressed: bool = False
    namespace: str = DEFAULT_NAMESPACE
    startup_timeout_s: float = 120.0
    drain_timeout_s: float = 20.0
    settle_s: float = 1.5
    max_depth: float = 10.0
    progress: bool = True
    frames: int | None = None
    labels_dir: Path | None = None
    labels_topic: str | None = None
    report: bool = True
    report_samples: int = 3
    peak: bool = False
    max_missed: float = 0.05
    peak_min_rate_hz: float = 2.0
    peak_max_rate_hz: float = 64.0
    peak_frames: int = 30


class ReplaySession:
    """The node subprocess and the recorder, matched and ready to receive frames.

    Use as a context manager; :meth:`run` sends one schedule and waits for its outputs, so a
    fixed-rate run and each peak-search trial share one node (no restart between trials).
    """

    def __init__(self, opts: ReplayOptions, image_msgtype: str, bag_dir: Path) -> None:
        self.opts = opts
        self.image_msgtype = image_msgtype
        self.bag_dir = bag_dir
        self.exit_code: int | None = None
        self.all_sent: set[int] = set()

    def __enter__(self) -> ReplaySession:
        import rclpy

        opts = self.opts
        env = loopback_environment()
        domain_id = int(env["ROS_DOMAIN_ID"])
        os.environ.update({k: env[k] for k in ("RMW_IMPLEMENTATION",
                                               "FASTDDS_DEFAULT_PROFILES_FILE",
                                               "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
        overrides = list(opts.overrides)
        if opts.compressed:
            overrides.append("input_transport:=compressed")
        image_topic = opts.topics.compressed if opts.compressed else opts.topics.image
        remaps = {"image/compressed" if opts.compressed else "image": image_topic,
                  "camera_info": opts.topics.camera_info}
        self.node = NodeProcess(opts.namespace, remaps, opts.params_file, overrides,
                                Path(opts.out) / "node.log", domain_id)
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, domain_id=domain_id)  # not sys.argv
        self.recorder = None
        try:
            self.recorder = Recorder(self.context, opts.namespace,
                                     {"image": image_topic, "camera_info": opts.topics.camera_info},
                                     self.image_msgtype, self.bag_dir)
            deadline = time.monotonic() + opts.startup_timeout_s
            while not self.recorder.matched():
                self.node.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"perception_node topics did not match within "
                                       f"{opts.startup_timeout_s} s; see {self.node.log_path}")
                time.sleep(0.1)
            time.sleep(0.5)  # let the remaining endpoints match
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def primary(self) -> str:
        active = self.recorder.active_outputs()
        return "depth/image" if "depth/image" in active else active[0]

    def run(self, frames: list[InputFrame], schedule: list[tuple[int, int]],
            rate_hz: float | None) -> tuple[dict[int, float], dict, float]:
        """Send ``schedule`` and wait until every output arrived, or no new output came for
        ``settle_s`` (dropped frames never arrive), or ``drain_timeout_s`` passed.

        Returns:
            ``(sent, node process measurements, elapsed s)``.
        """
        opts = self.opts
        t0 = time.monotonic()
        with ProcessMonitor(self.node.proc.pid) as monitor:
            sent = publish_frames(self.recorder, frames, rate_hz, opts.progress, schedule)
            self.all_sent.update(sent)
            deadline = time.monotonic() + opts.drain_timeout_s
            last_n, last_change = -1, time.monotonic()
            while time.monotonic() < deadline:
                self.node.check_alive()
                n = self.recorder.count(self.primary, sent)
                if n == len(sent):
                    break
                if n != last_n:
                    last_n, last_change = n, time.monotonic()
                elif time.monotonic() - last_change > opts.settle_s:
                    break
                time.sleep(0.05)
        return sent, monitor.result(), time.monotonic() - t0

    def wait_for_diagnostics(self, timeout_s: float = 5.0) -> None:
        """Wait for one more /diagnostics message (stage times after the last output)."""
        n = len(self.recorder.diagnostics)
        deadline = time.monotonic() + timeout_s
        while len(self.recorder.diagnostics) <= n and time.monotonic() < deadline:
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        import rclpy

        self.exit_code = self.node.stop()
        if self.recorder is not None:
            self.recorder.close()
        rclpy.try_shutdown(context=self.context)


def _accuracy(opts: ReplayOptions, frames: list[InputFrame], schedule: list[tuple[int, int]],
              sent: dict[int, float], output_bag: Path, num_classes: int,
              class_names: list[str] | None) -> tuple[dict | None, list]:
    """Accuracy of the first output of each bag frame (looped repeats are not re-counted) and
    the report samples. Returns ``(accuracy result or None, samples)``."""
    from joint_perception.evaluation.accuracy import (
        AccuracyEvaluator,
        depth_error_map,
        load_recorded_outputs,
        load_references,
    )
    from joint_perception.evaluation.report import ReportSample
    from joint_perception.geometry import scale_intrinsics

    try:
        from joint_perception.data.rosbag_io import BagTopics

        topics = BagTopics(color=opts.topics.image, color_compressed=opts.topics.compressed,
                           color_info=opts.topics.camera_info, depth=opts.topics.depth)
        refs = load_references(opts.bag, opts.labels_dir, num_classes, topics,
                               opts.labels_topic)
    except ValueError:
        if opts.labels_dir is not None or opts.labels_topic is not None:
            raise
        return None, []
    ns = opts.namespace.rstrip("/")
    outputs = load_recorded_outputs(output_bag, {"depth": f"{ns}/depth/image",
                                                 "labels": f"{ns}/segmentation/labels",
                                                 "normals": f"{ns}/normals/image"})
    first: dict[int, int] = {}  # bag index -> stamp of its first output
    for idx, stamp in schedule:
        if stamp in sent and stamp in outputs and idx not in first:
            first[idx] = stamp
    names = class_names if class_names and len(class_names) == num_classes else None
    ev = AccuracyEvaluator(num_classes, names, max_depth=opts.max_depth)
    n = len(frames)
    picks = set(np.linspace(0, n - 1, min(opts.report_samples, n)).round().astype(int).tolist()
                ) if opts.report_samples > 0 else set()
    samples = []
    for idx in sorted(first):
        ref = refs.get(frames[idx].stamp_ns)
        out = outputs[first[idx]]
        ev.add(frames[idx].stamp_ns, out.get("depth"), out.get("labels"), out.get("normals"), ref)
        if idx in picks and ref is not None and ref.rgb is not None:
            d = out.get("depth")
            K = ref.K if d is None else scale_intrinsics(ref.K, ref.rgb.shape[:2], d.shape)
            err = depth_error_map(d, ref.depth) if d is not None and ref.depth is not None \
                else None
            samples.append(ReportSample(f"bag frame {idx}", ref.rgb,
                                        d, ref.depth, out.get("labels"), out.get("normals"),
                                        err, K))
    return ev.result(), samples


def _peak_search(session: ReplaySession, frames: list[InputFrame], opts: ReplayOptions
                 ) -> tuple[dict, dict[int, float], dict, list[tuple[int, int]], float]:
    """Peak-throughput search; each trial sends ``peak_frames`` fresh stamps. Returns
    (peak record, sent/process/schedule/elapsed of the best passing trial, else the first)."""
    stamps = [f.stamp_ns for f in frames]
    total = opts.peak_frames * 16
    full = loop_schedule(stamps, total)
    cursor = [0]
    runs: dict[float, tuple] = {}

    def trial(rate: float) -> dict:
        start = cursor[0]
        if start + opts.peak_frames > len(full):
            raise RuntimeError("peak search ran out of scheduled frames")
        sched = full[start:start + opts.peak_frames]
        cursor[0] += opts.peak_frames
        sent, proc, elapsed = session.run(frames, sched, rate)
        got = session.recorder.arrivals(session.primary)
        perf = performance_fields(sent, {s: t for s, t in got.items() if s in sent})
        runs[rate] = (sent, proc, sched, elapsed)
        time.sleep(0.3)
        return perf

    res = find_peak_rate(trial, opts.peak_min_rate_hz, opts.peak_max_rate_hz, opts.max_missed,
                         max_trials=10)
    record = {"peak_rate_hz": res.peak_rate_hz, "max_missed": opts.max_missed,
              "frames_per_trial": opts.peak_frames,
              "trials": [{"rate_hz": r, "missed_fraction": f,
                          "MEAN_FRAME_RATE": p.get("MEAN_FRAME_RATE"),
                          "MEAN_LATENCY": p.get("MEAN_LATENCY"),
                          "P95_LATENCY": p.get("P95_LATENCY")} for r, f, p in res.trials]}
    best = res.peak_rate_hz if res.peak_rate_hz is not None else res.trials[0][0]
    sent, proc, sched, elapsed = runs[best]
    return record, sent, proc, sched, elapsed


def replay(opts: ReplayOptions) -> dict:
    """Run the whole replay; returns the summary (also written to ``opts.out``, with the
    report and the output bag).

    A fixed-rate run sends ``opts.frames`` frames (the bag looped, re-stamped) at
    ``opts.rate_hz`` (recorded timing when None); with ``opts.peak`` the peak-throughput
    search runs instead and the summary describes its best passing trial.

    Raises:
        FileNotFoundError / ValueError: bad bag, topics or labelled folder.
        RuntimeError: the node exited early or its topics never matched (log tail included).
    """
    from joint_perception.data.rosbag_io import bag_sha256

    frames, image_type = load_input_frames(opts.bag, opts.topics, opts.compressed)
    if not frames:
        raise ValueError(f"{opts.bag}: no image messages to replay")
    if opts.labels_dir is not None and not Path(opts.labels_dir).is_dir():
        raise FileNotFoundError(f"labelled folder not found: {opts.labels_dir}")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".output.partial"
    shutil.rmtree(partial, ignore_errors=True)
    n = opts.frames if opts.frames is not None else len(frames)
    schedule = loop_schedule([f.stamp_ns for f in frames], n)
    peak = None
    with ReplaySession(opts, image_type, partial) as session:
        if opts.peak:
            peak, sent, process, schedule, elapsed = _peak_search(session, frames, opts)
        else:
            sent, process, elapsed = session.run(frames, schedule, opts.rate_hz)
        session.wait_for_diagnostics()
        summary = summarise(frames, sent, session.recorder,
                            f"{opts.namespace.rstrip('/')}/perception_node", elapsed, image_type,
                            process, session.all_sent)
    final = out / "output"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    summary.update(bag=str(opts.bag), bag_sha256=bag_sha256(opts.bag), output_bag=str(final),
                   node_exit_code=session.exit_code, rate_hz=opts.rate_hz,
                   compressed=opts.compressed, peak=peak,
                   load_average_1_5_15_min=os.getloadavg())

    meta = _model_metadata(summary["node"])
    num_classes = meta.num_classes if meta and meta.num_classes else 40
    accuracy, samples = _accuracy(opts, frames, schedule, sent, final, num_classes,
                                  meta.class_names if meta else None)
    summary["accuracy"] = accuracy
    depth = (accuracy or {}).get("aggregate", {}).get("depth")
    summary["depth_metrics"] = ({**depth, "frames": len(accuracy["per_frame"])}
                                if depth else None)
    if opts.report:
        from joint_perception.evaluation.report import write_report

        t_first = min(sent.values()) if sent else 0.0
        got = session.recorder.arrivals(summary["primary_output"] or "")
        order = sorted(sent, key=sent.get)
        notes = [f"{summary['frames_in']} frames sent "
                 + (f"at {opts.rate_hz:g} Hz" if opts.rate_hz else "at the recorded rate")
                 + (" (peak-throughput search: best passing trial)" if opts.peak else ""),
                 f"model {summary.get('model')}; backend {summary.get('backend')} on "
                 f"{summary.get('device')}"]
        if meta is not None and not meta.metrics:
            notes.append("the model's metadata records no measured metrics: it may be "
                         "untrained or an early version")
        html_path, _ = write_report(
            out, summary, accuracy, [sent[s] - t_first for s in order],
            [1e3 * (got[s] - sent[s]) if s in got else None for s in order],
            summary["stages_p50_ms"], samples, title=f"Replay of {opts.bag}", notes=notes,
            num_classes=num_classes, max_depth=opts.max_depth)
        summary["report"] = str(html_path)
    write_summary(out, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Console script ``replay`` (see the module docstring); returns the exit code."""
    ap = argparse.ArgumentParser(prog="replay", description=__doc__.splitlines()[0])
    ap.add_argument("--bag", required=True, type=Path, help="rosbag2 directory (sqlite3 or MCAP)")
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--rate", type=float, default=None,
                    help="publish rate in Hz (default: the recorded rate)")
    ap.add_argument("--frames", type=int, default=None,
                    help="frames to send, looping the bag (default: each bag frame once)")
    ap.add_argument("--peak", action="store_true",
                    help="search the peak rate with at most --max-missed missed frames")
    ap.add_argument("--max-missed", type=float, default=0.05,
                    help="accepted missed-frame fraction for --peak (default 0.05)")
    ap.add_argument("--peak-min-rate", type=float, default=2.0)
    ap.add_argument("--peak-max-rate", type=float, default=64.0)
    ap.add_argument("--peak-frames", type=int, default=30, help="frames per --peak trial")
    ap.add_argument("--params", type=Path, default=None, help="node parameter YAML")
    ap.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                    help="node parameter override (repeatable)")
    ap.add_argument("--compressed", action="store_true", help="replay the compressed images")
    ap.add_argument("--image-topic", default=ReplayTopics.image)
    ap.add_argument("--compressed-topic", default=ReplayTopics.compressed)
    ap.add_argument("--camera-info-topic", default=ReplayTopics.camera_info)
    ap.add_argument("--depth-topic", default=ReplayTopics.depth,
                    help="ground-truth depth topic (16UC1 mm or 32FC1 m)")
    ap.add_argument("--labels-dir", type=Path, default=None,
                    help="labelled folder paired with the bag frames (e.g. "
                         "../shared/data/nyuv2_test) for segmentation metrics")
    ap.add_argument("--labels-topic", default=None,
                    help="ground-truth labels topic in the bag (mono8/mono16 class ids)")
    ap.add_argument("--no-report", action="store_true", help="skip report.html/report.md")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.rate is not None and a.rate <= 0:
        ap.error(f"--rate must be > 0, got {a.rate}")
    if a.frames is not None and a.frames < 1:
        ap.error(f"--frames must be >= 1, got {a.frames}")
    if not 0 <= a.max_missed < 1:
        ap.error(f"--max-missed must be in [0, 1), got {a.max_missed}")
    if not 0 < a.peak_min_rate <= a.peak_max_rate:
        ap.error("need 0 < --peak-min-rate <= --peak-max-rate")
    if a.peak_frames < 3:
        ap.error("--peak-frames must be >= 3")
    if a.labels_dir is not None and a.labels_topic is not None:
        ap.error("give either --labels-dir or --labels-topic, not both")
    if a.params is not None and not a.params.is_file():
        ap.error(f"--params: no such file {a.params}")
    topics = ReplayTopics(a.image_topic, a.compressed_topic, a.camera_info_topic, a.depth_topic)
    try:
        s = replay(ReplayOptions(bag=a.bag, out=a.out, rate_hz=a.rate, params_file=a.params,
                                 overrides=a.set, topics=topics, compressed=a.compressed,
                                 progress=not a.no_progress, frames=a.frames,
                                 labels_dir=a.labels_dir, labels_topic=a.labels_topic,
                                 report=not a.no_report, peak=a.peak,
                                 max_missed=a.max_missed, peak_min_rate_hz=a.peak_min_rate,
                                 peak_max_rate_hz=a.peak_max_rate, peak_frames=a.peak_frames))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return 1
    lat = s["latency_ms"]
    perf = s["performance"]
    print(f"frames in {s['frames_in']} out {s['frames_out']} dropped {s['frames_dropped']}; "
          f"latency p50 {_fmt(lat['p50_ms'])} ms p95 {_fmt(lat['p95_ms'])} ms; "
          f"MEAN_FRAME_RATE {_fmt(perf['MEAN_FRAME_RATE'])} Hz; node CPU "
          f"{_fmt(perf.get('NODE_CPU_PERCENT'))} %")
    if s.get("peak"):
        print(f"peak rate {_fmt(s['peak']['peak_rate_hz'])} Hz (<= {a.max_missed:g} missed)")
    versus = _versus_baselines_markdown(s)
    if versus:
        print("\n".join(versus[1:]))
    print(f"output bag: {s['output_bag']}\nsummary: {a.out / 'summary.json'}, "
          f"{a.out / 'summary.md'}" + (f"\nreport: {s['report']}" if s.get("report") else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
