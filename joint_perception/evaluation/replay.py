"""``replay``: play a rosbag2 through the running perception node over real ROS and summarise.

    replay --bag ../shared/data/bags/nyuv2_test10_mcap --out out/replay [--rate 10]
           [--params config/perception.yaml] [--set backend:=onnxruntime] [--compressed]

Steps (each a separate piece, so fixed-rate looping and peak-throughput search can reuse them):

1. :func:`load_input_frames` reads the bag's image (or compressed image) and camera_info
   messages as raw CDR with ``rosbags`` (sqlite3 or MCAP) — published unchanged, so header
   stamps and frame_ids are the recorded ones.
2. :class:`NodeProcess` starts ``perception_node`` as a subprocess in a private namespace
   with loopback-only DDS (:func:`joint_perception.ros.local_dds.loopback_environment`),
   remapping its inputs to the bag's topics; stops it with SIGINT.
3. :class:`Recorder` (an rclpy node) publishes the inputs, subscribes to every output topic
   (reliable) and ``/diagnostics``, writes each received message to the output rosbag2 (MCAP)
   and notes its wall-clock receive time per header stamp.
4. :func:`publish_frames` publishes at the recorded rate or ``--rate`` Hz (tqdm progress).
5. :func:`summarise` computes frames in/out/dropped, end-to-end latency (send wall time ->
   receive wall time, paired by header stamp), per-stage times (from the node's diagnostics)
   and depth metrics against the bag's ground-truth depth; :func:`write_summary` writes
   ``DIR/summary.json`` and ``DIR/summary.md`` atomically. The bag goes to ``DIR/output/``.
"""

from __future__ import annotations

import argparse
import os
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
    """Bag topic names (RealSense-style defaults, as in ../shared/data/bags)."""

    image: str = "/camera/color/image_raw"
    compressed: str = "/camera/color/image_raw/compressed"
    camera_info: str = "/camera/color/camera_info"
    depth: str = "/camera/aligned_depth_to_color/image_raw"


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


def load_ground_truth_depth(bag: str | os.PathLike, topic: str) -> dict[int, np.ndarray]:
    """``{header stamp ns: HxW float32 metres (NaN invalid)}`` from a 16UC1 mm or 32FC1 m topic.

    Empty when the bag has no such topic.
    """
    from rosbags.highlevel import AnyReader

    from joint_perception.image_codec import decode_image

    out: dict[int, np.ndarray] = {}
    with AnyReader([Path(bag)]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            arr = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                               msg.is_bigendian)
            depth = arr.astype(np.float32) * (1e-3 if arr.dtype == np.uint16 else 1.0)
            depth[~(depth > 0)] = np.nan
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            out[stamp] = depth
    return out


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

    Messages are kept as raw CDR (no deserialisation on the hot path) and written to
    ``bag_dir`` (MCAP) as they arrive; :attr:`received` maps topic -> {stamp_ns: wall time}.
    Call :meth:`close` to finish the bag.
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
        self._lock = threading.Lock()
        self.received: dict[str, dict[int, float]] = defaultdict(dict)
        self.frame_ids: dict[str, set[str]] = defaultdict(set)
        self.depth_msgs: dict[int, bytes] = {}
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
                if rel == "depth/image":
                    self.depth_msgs[stamp] = raw
                self._writer.write(conn, time.time_ns(), raw)
        return cb

    def _diag_callback(self, conn):
        def cb(raw: bytes) -> None:
            with self._lock:
                self.diagnostics.append((time.time(), raw))
                self._writer.write(conn, time.time_ns(), raw)
        return cb

    def matched(self) -> bool:
        """Inputs have a subscriber and at least one output has a publisher."""
        return (self.pub_image.get_subscription_count() > 0
                and self.pub_info.get_subscription_count() > 0
                and any(s.get_publisher_count() > 0 for s in self.subs.values()))

    def active_outputs(self) -> list[str]:
        """Relative output topics that the node publishes."""
        return [rel for rel, s in self.subs.items() if s.get_publisher_count() > 0]

    def count(self, rel: str) -> int:
        with self._lock:
            return len(self.received.get(rel, {}))

    def close(self) -> None:
        self._executor.shutdown()
        self._spin.join(5)
        with self._lock:
            self._writer.close()
        self.node.destroy_node()


def publish_frames(recorder: Recorder, frames: list[InputFrame], rate_hz: float | None = None,
                   progress: bool = True) -> dict[int, float]:
    """Publish each frame's CameraInfo then image at the recorded rate or ``rate_hz``.

    Returns:
        ``{header stamp ns: wall time (s) just before the image was published}``.
    """
    from tqdm import tqdm

    sent: dict[int, float] = {}
    if not frames:
        return sent
    t_first = frames[0].bag_time_ns
    start = time.monotonic()
    for i, frame in enumerate(tqdm(frames, desc="replay", unit="frame", disable=not progress)):
        due = i / rate_hz if rate_hz else (frame.bag_time_ns - t_first) * 1e-9
        delay = start + due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if frame.info_cdr is not None:
            recorder.pub_info.publish(frame.info_cdr)
        sent[frame.stamp_ns] = time.time()
        recorder.pub_image.publish(frame.image_cdr)
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


def depth_metrics(pred_by_stamp: dict[int, np.ndarray], gt_by_stamp: dict[int, np.ndarray],
                  max_depth: float = 10.0) -> dict | None:
    """abs rel, RMSE, delta1..3, coverage (:class:`joint_perception.metrics.DepthMetrics`).

    Frames pair by header stamp; NaN predictions count as missing (``coverage``), as the
    metrics module defines. Predictions at another resolution are resized (nearest) to the
    ground truth. Returns None when no frame pairs.
    """
    import cv2

    from joint_perception.metrics import DepthMetrics

    metric = DepthMetrics(max_depth=max_depth)
    frames = 0
    for stamp, gt in gt_by_stamp.items():
        pred = pred_by_stamp.get(stamp)
        if pred is None:
            continue
        if pred.shape != gt.shape:
            pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST)
        metric.update(pred, gt)
        frames += 1
    if frames == 0:
        return None
    result = {k: float(v) for k, v in metric.compute().items()}
    result["frames"] = frames
    return result


def summarise(frames: list[InputFrame], sent: dict[int, float], recorder: Recorder,
              gt: dict[int, np.ndarray], node_fqn: str, elapsed_s: float) -> dict:
    """The replay summary (JSON-ready dict); see the module docstring."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from joint_perception.image_codec import decode_image

    active = recorder.active_outputs()
    primary = "depth/image" if "depth/image" in active else (active[0] if active else None)
    received = {rel: dict(recorder.received.get(rel, {})) for rel in active}
    out_stamps = set(received.get(primary, {})) if primary else set()
    latency = [1e3 * (received[primary][s] - sent[s]) for s in sorted(out_stamps) if s in sent]
    all_out = [s for s in sent if all(s in received[rel] for rel in active)]
    latency_all = [1e3 * (max(received[rel][s] for rel in active) - sent[s]) for s in all_out]

    preds = {}
    for stamp, raw in recorder.depth_msgs.items():
        msg = deserialize_message(raw, Image)
        preds[stamp] = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                    msg.is_bigendian).copy()
    diag = _last_diagnostics(recorder, node_fqn)
    stages = {k[len("stage_"):-len("_p50_ms")]: float(v) for k, v in diag.items()
              if k.startswith("stage_") and k.endswith("_p50_ms")}
    input_ids = sorted({f.frame_id for f in frames})
    return {
        "frames_in": len(sent),
        "frames_out": len(out_stamps),
        "frames_dropped": len(sent) - len(out_stamps & set(sent)),
        "unexpected_stamps": len(out_stamps - set(sent)),
        "elapsed_s": elapsed_s,
        "input_stamps_ns": sorted(sent),
        "input_frame_ids": input_ids,
        "outputs": {rel: {"topic": recorder.output_topics[rel], "count": len(received[rel]),
                          "frame_ids": sorted(recorder.frame_ids.get(rel, set())),
                          "stamps_match_input": set(received[rel]) <= set(sent)}
                    for rel in active},
        "primary_output": primary,
        "latency_ms": _percentiles(latency),
        "latency_all_outputs_ms": _percentiles(latency_all),
        "stages_p50_ms": stages,
        "node": {k: diag[k] for k in ("backend", "backend_reason", "device", "model",
                                      "frames_received", "frames_processed", "frames_dropped",
                                      "frames_skipped") if k in diag},
        "depth_metrics": depth_metrics(preds, gt) if gt else None,
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
    lines += ["", "| stage | p50 (ms) |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in s["stages_p50_ms"].items()]
    lines += ["", "| output topic | messages | frame_id | stamps = input |", "|---|---|---|---|"]
    lines += [f"| `{o['topic']}` | {o['count']} | {', '.join(o['frame_ids'])} | "
              f"{o['stamps_match_input']} |" for o in s["outputs"].values()]
    if s.get("depth_metrics"):
        lines += ["", "| depth metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in s["depth_metrics"].items()]
    node = s.get("node", {})
    if node:
        lines += ["", "Node: " + "; ".join(f"{k} = {v}" for k, v in node.items())]
    return "\n".join(lines) + "\n"


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
    max_depth: float = 10.0
    progress: bool = True


def replay(opts: ReplayOptions) -> dict:
    """Run the whole replay; returns the summary (also written to ``opts.out``).

    Raises:
        FileNotFoundError / ValueError: bad bag or topics.
        RuntimeError: the node exited early or its topics never matched (log tail included).
    """
    import rclpy

    frames, image_type = load_input_frames(opts.bag, opts.topics, opts.compressed)
    if not frames:
        raise ValueError(f"{opts.bag}: no image messages to replay")
    gt = load_ground_truth_depth(opts.bag, opts.topics.depth)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".output.partial"
    shutil.rmtree(partial, ignore_errors=True)

    env = loopback_environment()
    domain_id = int(env["ROS_DOMAIN_ID"])
    os.environ.update({k: env[k] for k in ("RMW_IMPLEMENTATION", "FASTDDS_DEFAULT_PROFILES_FILE",
                                           "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    overrides = list(opts.overrides)
    if opts.compressed:
        overrides.append("input_transport:=compressed")
    image_topic = opts.topics.compressed if opts.compressed else opts.topics.image
    remaps = {"image/compressed" if opts.compressed else "image": image_topic,
              "camera_info": opts.topics.camera_info}
    node = NodeProcess(opts.namespace, remaps, opts.params_file, overrides, out / "node.log",
                       domain_id)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    recorder = None
    try:
        recorder = Recorder(context, opts.namespace,
                            {"image": image_topic, "camera_info": opts.topics.camera_info},
                            image_type, partial)
        deadline = time.monotonic() + opts.startup_timeout_s
        while not recorder.matched():
            node.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"perception_node topics did not match within "
                                   f"{opts.startup_timeout_s} s; see {node.log_path}")
            time.sleep(0.1)
        time.sleep(0.5)  # let the remaining endpoints match
        t0 = time.monotonic()
        sent = publish_frames(recorder, frames, opts.rate_hz, opts.progress)
        primary = "depth/image" if "depth/image" in recorder.active_outputs() else (
            recorder.active_outputs()[0])
        deadline = time.monotonic() + opts.drain_timeout_s
        while recorder.count(primary) < len(sent) and time.monotonic() < deadline:
            node.check_alive()
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        # one more diagnostics message after the last output, for the stage times
        n_diag = len(recorder.diagnostics)
        deadline = time.monotonic() + 5.0
        while len(recorder.diagnostics) <= n_diag and time.monotonic() < deadline:
            time.sleep(0.05)
        summary = summarise(frames, sent, recorder, gt, f"{opts.namespace.rstrip('/')}/"
                            "perception_node", elapsed)
    finally:
        code = node.stop()
        if recorder is not None:
            recorder.close()
        rclpy.try_shutdown(context=context)
    final = out / "output"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    summary.update(bag=str(opts.bag), output_bag=str(final), node_exit_code=code,
                   rate_hz=opts.rate_hz, compressed=opts.compressed)
    write_summary(out, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Console script ``replay`` (see the module docstring); returns the exit code."""
    ap = argparse.ArgumentParser(prog="replay", description=__doc__.splitlines()[0])
    ap.add_argument("--bag", required=True, type=Path, help="rosbag2 directory (sqlite3 or MCAP)")
    ap.add_argument("--out", required=True, type=Path, help="output directory")
    ap.add_argument("--rate", type=float, default=None,
                    help="publish rate in Hz (default: the recorded rate)")
    ap.add_argument("--params", type=Path, default=None, help="node parameter YAML")
    ap.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                    help="node parameter override (repeatable)")
    ap.add_argument("--compressed", action="store_true", help="replay the compressed images")
    ap.add_argument("--image-topic", default=ReplayTopics.image)
    ap.add_argument("--compressed-topic", default=ReplayTopics.compressed)
    ap.add_argument("--camera-info-topic", default=ReplayTopics.camera_info)
    ap.add_argument("--depth-topic", default=ReplayTopics.depth,
                    help="ground-truth depth topic (16UC1 mm or 32FC1 m)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.rate is not None and a.rate <= 0:
        ap.error(f"--rate must be > 0, got {a.rate}")
    if a.params is not None and not a.params.is_file():
        ap.error(f"--params: no such file {a.params}")
    topics = ReplayTopics(a.image_topic, a.compressed_topic, a.camera_info_topic, a.depth_topic)
    try:
        s = replay(ReplayOptions(bag=a.bag, out=a.out, rate_hz=a.rate, params_file=a.params,
                                 overrides=a.set, topics=topics, compressed=a.compressed,
                                 progress=not a.no_progress))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"replay: error: {exc}", file=sys.stderr)
        return 1
    lat = s["latency_ms"]
    print(f"frames in {s['frames_in']} out {s['frames_out']} dropped {s['frames_dropped']}; "
          f"latency p50 {_fmt(lat['p50_ms'])} ms p95 {_fmt(lat['p95_ms'])} ms")
    print(f"output bag: {s['output_bag']}\nsummary: {a.out / 'summary.json'}, "
          f"{a.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
