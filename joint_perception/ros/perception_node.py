"""``perception_node``: camera frames in; depth, labels, normals, point cloud out (docs/contracts.md section 3).

A thin ROS shell around :class:`joint_perception.runtime.processing.Pipeline`:

* subscribes ``image`` (sensor_msgs/Image) or ``image/compressed`` (``input_transport:
  compressed``) and ``camera_info``, with the sensor-data QoS of REP 2003 (overridable);
* pairs each image with a CameraInfo (:class:`~joint_perception.ros.frame_buffer.CameraInfoMatcher`:
  cached latest, exact or approximate stamp) and puts the pair into a newest-frame-only
  :class:`~joint_perception.ros.frame_buffer.LatestSlot`; the callbacks never block, and an
  overwritten unprocessed frame counts as dropped;
* a worker thread decodes, runs the pipeline for the outputs somebody subscribes to, and
  publishes ``depth/image`` (32FC1 m, NaN invalid, REP 118), ``depth/camera_info`` (K/P of the
  published resolution), ``segmentation/labels`` (mono8/mono16), ``segmentation/color`` (rgb8),
  ``normals/image`` (32FC3, optical frame), ``points`` (organised PointCloud2 x,y,z,rgb,label)
  and ``confidence`` (32FC1), every one with the input image's header unchanged;
* bad input (unsupported encoding, wrong step/size, empty data, no/zero/NaN CameraInfo,
  undecodable compressed bytes) is skipped with a warning rate-limited per reason
  (``warn_throttle_s``) and counted by reason in ``/diagnostics``; a distorted CameraInfo is
  processed as if rectified with a one-time warning (rectification is the driver's job);
* ``/diagnostics`` every ``diagnostics_period_s``: rate, latency p50/p95, dropped and skipped
  frames, backend and why it was chosen, model, per-stage p50 times.

Topic names are relative, so ``__ns`` / launch namespaces apply. Exit codes of :func:`main`:
0 after SIGINT/SIGTERM, 2 for invalid parameters or a model/backend that cannot load.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from joint_perception.colormap import colorize_labels, label_palette, overlay
from joint_perception.geometry import scale_intrinsics
from joint_perception.image_codec import COLOR_ENCODINGS, ImageFormatError, image_to_rgb8
from joint_perception.pointcloud import pack_depth
from joint_perception.ros import conversions
from joint_perception.ros.diagnostics import PerceptionStats, build_diagnostic_array
from joint_perception.ros.frame_buffer import CameraInfoMatcher, FifoSlot, LatestSlot
from joint_perception.ros.parameters import declare_parameters, validate
from joint_perception.ros.qos import input_qos, output_qos
from joint_perception.ros.topics import OUTPUT_TOPICS, message_class
from joint_perception.runtime.factory import create_backend, resolve_model_path
from joint_perception.runtime.processing import Pipeline

NODE_NAME = "perception_node"


# Skip reasons (keys in /diagnostics as skipped_<reason>).
UNSUPPORTED_ENCODING = "unsupported_encoding"
MALFORMED_IMAGE = "malformed_image"
EMPTY_IMAGE = "empty_image"
UNDECODABLE_COMPRESSED = "undecodable_compressed"
NO_CAMERA_INFO = "no_camera_info"
INVALID_CAMERA_INFO = "invalid_camera_info"
UNMATCHED_CAMERA_INFO = "camera_info_not_matched"
PROCESSING_ERROR = "processing_error"


def stamp_ns(header) -> int:
    """Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class _Frame:
    """One processed frame on its way to the publishers: the input header and CameraInfo, the
    input image, the pipeline result at the output size, and the input image at the output
    size (resized once, on first use)."""

    def __init__(self, header, info, rgb: np.ndarray, result, out_size: tuple[int, int]):
        self.header, self.info, self.rgb, self.result, self.out_size = (
            header,
            info,
            rgb,
            result,
            out_size,
        )
        self._rgb_out = None

    def rgb_at_output(self) -> np.ndarray:
        if self._rgb_out is None:
            oh, ow = self.out_size
            self._rgb_out = (
                self.rgb
                if self.rgb.shape[:2] == (oh, ow)
                else cv2.resize(self.rgb, (ow, oh), interpolation=cv2.INTER_AREA)
            )
        return self._rgb_out


class PerceptionNode(Node):
    """The perception node. Construct after ``rclpy.init``; call :meth:`close` before destroying.

    Args:
        node_name: ROS node name.
        **kwargs: passed to :class:`rclpy.node.Node` (``context``, ``namespace``,
            ``parameter_overrides``, ``cli_args`` ...).

    Raises:
        ValueError: invalid parameters (all problems listed, one per line).
        FileNotFoundError, RuntimeError: the model or backend cannot be loaded.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self)
        p = self.params
        model_path = resolve_model_path(p["model"])
        options = {"precision": p["precision"], "latency_target_ms": p["latency_target_ms"]}
        if p["engine_cache_dir"]:
            options["cache_dir"] = p["engine_cache_dir"]
        self.backend = create_backend(
            model_path, backend=p["backend"], device=p["device"] or None, fallback=True, **options
        )
        self.metadata = self.backend.metadata
        self.model_path = Path(model_path)
        self._pipeline_lock = threading.Lock()
        self.pipeline = self._make_pipeline(p["min_depth"], p["max_depth"])
        colors = np.asarray(self.metadata.class_colors, dtype=np.uint8).reshape(-1, 3)
        self.palette = (
            colors
            if len(colors) == self.metadata.num_classes + 1
            else label_palette(self.metadata.num_classes)
        )

        self.stats = PerceptionStats()
        # newest-frame-only by default; a FIFO only for the queue_size benchmark baseline
        self.slot = FifoSlot(p["queue_size"]) if p["queue_size"] > 0 else LatestSlot()
        self._debug_delay_s = p["debug_delay_ms"] / 1e3
        self.matcher = CameraInfoMatcher(p["camera_info_sync"], int(p["sync_slop_s"] * 1e9))
        self._reason_loggers: dict = {}
        self._warned_once: set[str] = set()

        q_in, q_out = input_qos(p), output_qos(p)
        self.compressed = p["input_transport"] == "compressed"
        if self.compressed:
            self.create_subscription(CompressedImage, "image/compressed", self._on_image, q_in)
        else:
            self.create_subscription(Image, "image", self._on_image, q_in)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, q_in)

        # one publisher per enabled entry of the topic table (joint_perception.ros.topics)
        self.publishers_by_topic = {
            t.name: self.create_publisher(message_class(t.msg_type), t.name, q_out)
            for t in OUTPUT_TOPICS
            if p[t.param]
        }
        self._builders = {
            "depth/image": self._depth_msg,
            "depth/camera_info": self._depth_info_msg,
            "segmentation/labels": self._labels_msg,
            "segmentation/color": self._color_msg,
            "normals/image": self._normals_msg,
            "points": self._points_msg,
            "confidence": self._confidence_msg,
        }
        missing = sorted({t.name for t in OUTPUT_TOPICS} - set(self._builders))
        if missing:
            raise RuntimeError(f"no message builder for output topic(s) {missing}")
        self.pub_diag = self.create_publisher(
            DiagnosticArray,
            "/diagnostics",
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.diag_info = {
            "backend": self.backend.name,
            "backend_reason": getattr(self.backend, "reason", ""),
            "device": getattr(self.backend, "device", ""),
            "model": f"{self.metadata.architecture} ({self.model_path})",
            "input_transport": p["input_transport"],
        }
        self.create_timer(p["diagnostics_period_s"], self.publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="perception_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"model {self.metadata.architecture} from {self.model_path}; backend "
            f"{self.backend.describe()} ({self.diag_info['backend_reason']}); input "
            f"{'image/compressed' if self.compressed else 'image'} + camera_info "
            f"({p['camera_info_sync']})"
        )

    # ------------------------------------------------------------------ set-up helpers
    def _make_pipeline(self, min_depth: float, max_depth: float) -> Pipeline:
        meta = self.metadata
        lo = min_depth if min_depth > 0 else meta.min_depth
        hi = max_depth if max_depth > 0 else meta.max_depth
        if lo >= hi:
            raise ValueError(
                f"min_depth {lo} must be smaller than max_depth {hi} "
                f"(0 takes the model's value {meta.min_depth}/{meta.max_depth})"
            )
        return Pipeline(self.backend, dataclasses.replace(meta, min_depth=lo, max_depth=hi))

    def _on_set_parameters(self, changes) -> SetParametersResult:
        new = dict(self.params)
        new.update({c.name: c.value for c in changes if c.name in self.params})
        problems = validate(
            {k: new[k] for k in {c.name for c in changes} if k in new}, check_model=False
        )
        if not problems and (new["min_depth"], new["max_depth"]) != (
            self.params["min_depth"],
            self.params["max_depth"],
        ):
            try:
                pipeline = self._make_pipeline(new["min_depth"], new["max_depth"])
            except ValueError as exc:
                problems.append(str(exc))
            else:
                with self._pipeline_lock:
                    self.pipeline = pipeline
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        self.params = new
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ callbacks (executor)
    def _on_image(self, msg) -> None:
        recv = time.monotonic()
        self.stats.frame_received()
        pair, unmatched = self.matcher.add_image(stamp_ns(msg.header), (msg, recv))
        if unmatched is not None and not self.matcher.has_info:
            self._skip(
                NO_CAMERA_INFO,
                "no CameraInfo received yet on "
                f"{self.resolve_topic_name('camera_info')}; frame skipped",
            )
        elif unmatched is not None:
            self._skip(
                UNMATCHED_CAMERA_INFO,
                f"no CameraInfo with a matching stamp ({self.matcher.mode} sync) arrived "
                "before the next image",
            )
        if pair is not None:
            self._submit(pair)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        pair = self.matcher.add_info(stamp_ns(msg.header), msg)
        if pair is not None:
            self._submit(pair)

    def _submit(self, pair) -> None:
        (image, recv), info = pair
        if self.slot.put((image, info, recv)):
            self.stats.frame_dropped()

    def _skip(self, reason: str, message: str) -> None:
        """Count a skipped frame and warn, rate-limited per reason (one logger per reason)."""
        self.stats.frame_skipped(reason)
        logger = self._reason_loggers.get(reason)
        if logger is None:
            logger = self._reason_loggers[reason] = self.get_logger().get_child(reason)
        logger.warning(message, throttle_duration_sec=self.params["warn_throttle_s"])

    def _warn_once(self, reason: str, message: str) -> None:
        self.stats.warned(reason)
        if reason not in self._warned_once:
            self._warned_once.add(reason)
            self.get_logger().warning(message)

    def publish_diagnostics(self) -> None:
        """Publish one DiagnosticArray on ``/diagnostics`` (also called by the timer)."""
        name = f"joint_perception: {self.get_fully_qualified_name()}"
        arr = build_diagnostic_array(
            self.stats.snapshot(),
            self.diag_info,
            self.get_clock().now().to_msg(),
            name,
            self.metadata.architecture,
        )
        self.pub_diag.publish(arr)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout=0.2)
            if item is None:
                continue
            try:
                self.process(*item)
            except Exception as exc:  # keep the node alive; the reason is logged and counted
                self._skip(PROCESSING_ERROR, f"processing failed: {type(exc).__name__}: {exc}")
            if self._debug_delay_s:
                time.sleep(self._debug_delay_s)

    def subscribed_topics(self) -> list[str]:
        """Enabled output topics that have at least one subscriber now."""
        return [
            n for n, pub in self.publishers_by_topic.items() if pub.get_subscription_count() > 0
        ]

    def wanted_outputs(self) -> set[str]:
        """Network outputs (``depth``, ``labels``, ...) the subscribed topics are built from."""
        subscribed = set(self.subscribed_topics())
        return {o for t in OUTPUT_TOPICS if t.name in subscribed for o in t.needs}

    def _decode(self, msg) -> np.ndarray | None:
        """Image or CompressedImage -> HxWx3 uint8 RGB, or None (skipped and counted)."""
        if self.compressed:
            if len(msg.data) == 0:
                self._skip(EMPTY_IMAGE, "compressed image with empty data; frame skipped")
                return None
            try:
                return conversions.compressed_msg_to_rgb(msg)
            except ImageFormatError as exc:
                self._skip(UNDECODABLE_COMPRESSED, f"cannot decode compressed image: {exc}")
                return None
        if msg.encoding not in COLOR_ENCODINGS:
            self._skip(
                UNSUPPORTED_ENCODING,
                f"image encoding {msg.encoding!r} is not supported; use one of "
                f"{', '.join(COLOR_ENCODINGS)}",
            )
            return None
        if len(msg.data) == 0 or msg.height == 0 or msg.width == 0:
            self._skip(
                EMPTY_IMAGE,
                f"empty image ({msg.width}x{msg.height}, {len(msg.data)} bytes); frame skipped",
            )
            return None
        try:
            return image_to_rgb8(
                msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian
            )
        except ImageFormatError as exc:
            self._skip(MALFORMED_IMAGE, f"malformed image: {exc}")
            return None

    def _intrinsics(self, info: CameraInfo, height: int, width: int) -> np.ndarray | None:
        """3x3 K of the (height, width) image, or None (skipped and counted)."""
        try:
            K = conversions.camera_info_to_K(info)
        except ValueError as exc:
            self._skip(INVALID_CAMERA_INFO, f"unusable CameraInfo: {exc}; frame skipped")
            return None
        if conversions.camera_info_is_distorted(info):
            self._warn_once(
                "distorted_camera_info",
                f"CameraInfo has distortion ({info.distortion_model}, D={list(info.d)});"
                " the network expects rectified images: rectification is the camera"
                " driver's job (e.g. image_proc). Processing as if rectified.",
            )
        if info.height and info.width and (info.height, info.width) != (height, width):
            self._warn_once(
                "camera_info_size_mismatch",
                f"CameraInfo is {info.width}x{info.height} but the image is "
                f"{width}x{height}; scaling K to the image",
            )
            K = scale_intrinsics(K, (info.height, info.width), (height, width))
        return K

    def process(self, msg, info: CameraInfo, recv_time: float) -> bool:
        """Process one paired frame and publish its outputs; False when it was skipped.

        Args:
            msg: sensor_msgs Image or CompressedImage.
            info: the CameraInfo paired with it.
            recv_time: ``time.monotonic()`` when the image callback ran (latency origin).
        """
        t0 = time.perf_counter()
        rgb = self._decode(msg)
        if rgb is None:
            return False
        h, w = rgb.shape[:2]
        K = self._intrinsics(info, h, w)
        if K is None:
            return False
        t_decode = time.perf_counter()
        want = self.wanted_outputs()
        if not want:
            self.stats.frame_idle()
            return False
        meta = self.metadata
        out_size = (
            (h, w)
            if self.params["output_resolution"] == "input"
            else (meta.input_height, meta.input_width)
        )
        with self._pipeline_lock:
            pipeline = self.pipeline
        result = pipeline.run(rgb, K, out_size=out_size, want=want)
        t_pub = time.perf_counter()
        self._publish(msg.header, info, rgb, result, out_size)
        t_end = time.perf_counter()
        stages = {
            "decode": (t_decode - t0) * 1e3,
            **result.timings_ms,
            "publish": (t_end - t_pub) * 1e3,
        }
        self.stats.frame_processed((time.monotonic() - recv_time) * 1e3, stages)
        return True

    def _publish(self, header, info, rgb, result, out_size) -> None:
        """Build the message of every subscribed topic, then publish them: a failure while
        building any of them publishes none (no half-published frame)."""
        frame = _Frame(header, info, rgb, result, out_size)
        ready = []
        for name in self.subscribed_topics():
            msg = self._builders[name](frame)
            if msg is not None:  # the model lacks that output
                ready.append((self.publishers_by_topic[name], msg))
        for pub, msg in ready:
            pub.publish(msg)

    # ------------------------------------------------------------------ message builders
    def _depth_msg(self, f: _Frame):
        if f.result.depth is None:
            return None
        return conversions.array_to_image_msg(f.result.depth, "32FC1", f.header)

    def _depth_info_msg(self, f: _Frame):
        if f.result.depth is None:
            return None
        oh, ow = f.out_size
        if f.info.height and f.info.width:
            msg = conversions.scaled_camera_info(f.info, oh, ow)
            msg.header = f.header
            return msg
        return conversions.make_camera_info(f.result.K, oh, ow, f.header)

    def _labels_msg(self, f: _Frame):
        if f.result.labels is None:
            return None
        enc = "mono8" if f.result.labels.dtype == np.uint8 else "mono16"
        return conversions.array_to_image_msg(f.result.labels, enc, f.header)

    def _color_msg(self, f: _Frame):
        if f.result.labels is None:
            return None
        color = colorize_labels(f.result.labels, self.palette)
        if self.params["color_overlay_alpha"] > 0:
            color = overlay(f.rgb_at_output(), color, self.params["color_overlay_alpha"])
        return conversions.array_to_image_msg(color, "rgb8", f.header)

    def _normals_msg(self, f: _Frame):
        if f.result.normals is None:
            return None
        return conversions.array_to_image_msg(f.result.normals, "32FC3", f.header)

    def _confidence_msg(self, f: _Frame):
        if f.result.confidence is None:
            return None
        return conversions.array_to_image_msg(f.result.confidence, "32FC1", f.header)

    def _points_msg(self, f: _Frame):
        if f.result.depth is None:
            return None
        packed = pack_depth(
            f.result.depth,
            f.result.K,
            rgb=f.rgb_at_output(),
            labels=f.result.labels,
            decimation=self.params["points_decimation"],
        )
        return conversions.cloud_to_msg(packed, f.header)

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop and join the worker, release the backend. Idempotent."""
        self._stop.set()
        self.slot.close()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)
        self.backend.close()


def main(args=None) -> int:
    """Console script ``perception_node``: spin until SIGINT/SIGTERM; returns the exit code.

    Returns 2 (before any frame) when parameters are invalid or the model/backend cannot load;
    the message names the problem.
    """
    rclpy.init(args=args)
    logger = rclpy.logging.get_logger(NODE_NAME)
    try:
        node = PerceptionNode()
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as exc:
        logger.fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
