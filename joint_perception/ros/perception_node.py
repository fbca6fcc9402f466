"""``perception_node``: camera frames in; depth, labels, normals, point cloud out (docs/contracts.md section 3).

A managed (lifecycle) ROS node around :class:`joint_perception.runtime.processing.Pipeline`.

Lifecycle (REP 2000-style managed node, ``rclpy.lifecycle``; ``ros2 lifecycle set <node> ...``):

* constructed (*unconfigured*): parameters declared, ``/diagnostics`` publisher and timer;
  no model in memory, no topic but ``/diagnostics``;
* ``configure``: validates the parameters, loads the model (or takes a handle on the same
  model already loaded in this process, :class:`~joint_perception.runtime.shared.BackendPool`),
  creates the output publishers (lifecycle publishers: silent until activated). FAILURE (back
  to unconfigured, the reason logged and reported as ERROR in ``/diagnostics``) on invalid
  parameters or a model/backend that cannot load;
* ``activate``: starts the worker thread and enables the publishers; the camera is subscribed
  only while some output has a subscriber (publisher matched events, checked again before
  each frame is decoded);
* ``deactivate``: unsubscribes the camera, stops the worker, silences the publishers;
* ``cleanup``: destroys the publishers and releases the model (the last user closes it);
* ``autostart: true`` (default) runs configure + activate at start-up, as a plain node.

While active:

* subscribes ``image`` (sensor_msgs/Image) or ``image/compressed`` (``input_transport:
  compressed``) and ``camera_info``, with the sensor-data QoS of REP 2003 (overridable);
* pairs each image with a CameraInfo (:class:`~joint_perception.ros.frame_buffer.CameraInfoMatcher`:
  cached latest, exact or approximate stamp) and puts the pair into a newest-frame-only
  :class:`~joint_perception.ros.frame_buffer.LatestSlot`; the callbacks never block, and an
  overwritten unprocessed frame counts as dropped;
* a worker thread decodes, runs the pipeline for the outputs somebody subscribes to, builds
  every subscribed topic's message (:data:`joint_perception.ros.topics.OUTPUT_TOPICS`: depth,
  labels, colour, normals, confidence images each with a ``camera_info`` beside it, the
  ``compressed`` / ``compressedDepth`` image_transport variants, the organised point cloud),
  then publishes them all (no half-published frame), every one with the input image's header;
  the arrays are written into the worker's reused buffers and the raw image/cloud messages hold
  those buffers without a copy (:class:`_WorkerState`: nothing allocated per frame at a steady
  size; dropped, and the heap trimmed, when the frame size changes);
* the intrinsics of the image come from the CameraInfo with its binning and ROI applied
  (``image_geometry``'s convention); an image of another size gets K scaled to it (warned once);
* bad input (unsupported encoding, wrong step/size, empty data, a frame above
  ``max_input_pixels`` — refused before its pixels are allocated —, compressed bytes that are
  not the declared codec or undecodable, no/zero/NaN/absurd CameraInfo, an empty
  ``frame_id``) is skipped with a warning rate-limited per reason (``warn_throttle_s``) and
  counted by reason in ``/diagnostics``; a distorted CameraInfo is processed as if rectified
  with a one-time warning (rectification is the driver's job);
* a frame whose messages cannot all be built (e.g. a NaN P matrix, MemoryError) publishes
  none of them and is counted as ``publish_failed``;
* ``/diagnostics`` every ``diagnostics_period_s``: lifecycle state, rate, latency p50/p95,
  dropped and skipped frames (level from the last ``diagnostics_window_s`` only), backend and
  why it was chosen (a requested backend that fell back is also a warning on ``/rosout``),
  how many nodes share it, model, per-stage p50 times.

Several cameras in one process: ``perception_node --cameras front,rear`` (:func:`main`) runs
one node per camera namespace on one executor, all sharing one backend.

Topic names are relative, so ``__ns`` / launch namespaces apply. Exit codes of :func:`main`:
0 after SIGINT/SIGTERM (also during start-up), 2 for invalid parameters or a model/backend
that cannot load (with ``autostart``).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from joint_perception.allocator import release_freed_memory
from joint_perception.buffers import OutputBuffers
from joint_perception.colormap import colorize_labels, label_palette, overlay
from joint_perception.geometry import clear_ray_caches, intrinsics_problem, scale_intrinsics
from joint_perception.image_codec import (
    COLOR_ENCODINGS,
    CompressedFormatMismatch,
    ImageFormatError,
    InputTooLargeError,
    image_to_rgb8,
)
from joint_perception.pointcloud import pack_depth
from joint_perception.ros import conversions
from joint_perception.ros.diagnostics import PerceptionStats, build_diagnostic_array
from joint_perception.ros.frame_buffer import CameraInfoMatcher, FifoSlot, LatestSlot
from joint_perception.ros.logging_bridge import forward_python_logs
from joint_perception.ros.parameters import (
    PARAMETERS,
    SPECS,
    declare_parameters,
    unknown_parameters,
    validate,
)
from joint_perception.ros.qos import input_qos, output_qos
from joint_perception.ros.topics import OUTPUT_TOPICS, message_class, outputs_needed, outputs_of
from joint_perception.ros.transport_formats import encode_compressed, encode_compressed_depth
from joint_perception.runtime.factory import (
    MODEL_LOAD_ERRORS,
    THREAD_OPTIONS,
    cannot_start_message,
    resolve_model_path,
)
from joint_perception.runtime.processing import Pipeline
from joint_perception.runtime.shared import PROCESS_POOL, BackendPool

NODE_NAME = "perception_node"

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE

# Skip reasons (keys in /diagnostics as skipped_<reason>).
UNSUPPORTED_ENCODING = "unsupported_encoding"
MALFORMED_IMAGE = "malformed_image"
EMPTY_IMAGE = "empty_image"
UNDECODABLE_COMPRESSED = "undecodable_compressed"
INPUT_TOO_LARGE = "input_too_large"
COMPRESSED_FORMAT_MISMATCH = "compressed_format_mismatch"
NO_CAMERA_INFO = "no_camera_info"
INVALID_CAMERA_INFO = "invalid_camera_info"
ABSURD_CAMERA_INFO = "absurd_camera_info"
EMPTY_FRAME_ID = "empty_frame_id"
UNMATCHED_CAMERA_INFO = "camera_info_not_matched"
PROCESSING_ERROR = "processing_error"
PUBLISH_FAILED = "publish_failed"


def stamp_ns(header) -> int:
    """Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class _WorkerState:
    """What the worker keeps from one frame to the next so that a steady stream allocates
    nothing per frame (issue 13): the :class:`~joint_perception.buffers.OutputBuffers` every
    output array is written into, one persistent message per topic whose ``data`` *is* such a
    buffer (``conversions.image_msg_over_buffer`` / ``cloud_msg_over_buffer``: no copy) and the
    output CameraInfo derived once per input CameraInfo
    (:class:`~joint_perception.ros.conversions.ScaledCameraInfoCache`).

    One per camera node, used by its worker thread only; dropped as a whole when the frame
    size changes (a large frame's buffers are then freed, not kept) and on cleanup. The
    buffers are overwritten by the next frame: every message of a frame is published before
    the worker takes the next one.

    Attributes:
        size: ``((H, W) input, (h, w) output)`` the buffers are sized for.
    """

    def __init__(self, size: tuple[tuple[int, int], tuple[int, int]]):
        self.size = size
        self.buffers = OutputBuffers()
        self.msgs: dict[str, object] = {}
        self.camera_info = conversions.ScaledCameraInfoCache()

    @staticmethod
    def pixels(size: tuple[tuple[int, int], tuple[int, int]]) -> int:
        """Input plus output pixels of a ``size`` (what the buffers scale with)."""
        (ih, iw), (oh, ow) = size
        return ih * iw + oh * ow


class _Frame:
    """One processed frame on its way to the publishers: the input header and CameraInfo, the
    input image, the pipeline result at the output size, the worker's reused state, and values
    several builders share (computed once, on first use)."""

    def __init__(
        self,
        header,
        info,
        rgb: np.ndarray,
        result,
        out_size: tuple[int, int],
        state: _WorkerState,
    ):
        self.header, self.info, self.rgb, self.result, self.out_size = (
            header,
            info,
            rgb,
            result,
            out_size,
        )
        self.state = state
        self.cache: dict = {}

    def rgb_at_output(self) -> np.ndarray:
        """The input image at the output size ((h, w, 3) uint8; area resize into a reused
        buffer when the sizes differ)."""
        if "rgb_out" not in self.cache:
            oh, ow = self.out_size
            if self.rgb.shape[:2] == (oh, ow):
                self.cache["rgb_out"] = self.rgb
            else:
                dst = self.state.buffers.array("rgb_out", (oh, ow, 3), np.uint8)
                cv2.resize(self.rgb, (ow, oh), dst=dst, interpolation=cv2.INTER_AREA)
                self.cache["rgb_out"] = dst
        return self.cache["rgb_out"]

    def camera_info(self) -> CameraInfo:
        """The CameraInfo of every published image (K/P of the output size, input header),
        derived once per input CameraInfo."""
        oh, ow = self.out_size
        return self.state.camera_info.get(self.info, self.result.K, oh, ow, self.header)

    def image_msg(self, topic: str, arr: np.ndarray, buffer: str, encoding: str):
        """The persistent Image of ``topic`` over ``buffers.storage(buffer)``, its header this
        frame's; a copying Image when ``arr`` is not that buffer's array (never expected, but
        a message must not carry stale bytes)."""
        state = self.state
        storage = state.buffers.storage(buffer) if buffer in state.buffers.names() else None
        if (
            storage is None
            or len(storage) != arr.nbytes
            or not np.may_share_memory(arr, np.frombuffer(storage, np.uint8))
        ):
            return conversions.array_to_image_msg(arr, encoding, self.header)
        state.msgs[topic] = conversions.image_msg_over_buffer(
            arr, storage, encoding, self.header, state.msgs.get(topic)
        )
        return state.msgs[topic]


class PerceptionNode(LifecycleNode):
    """The perception node (one camera). Construct after ``rclpy.init``; call :meth:`close`
    before destroying it.

    Constructing declares the parameters only; :meth:`autostart` (or a lifecycle manager)
    configures and activates it (module docstring).

    Args:
        node_name: ROS node name.
        pool: where the backend comes from (default: the process-wide pool, so nodes of one
            process with the same model/backend/device share one backend).
        **kwargs: passed to :class:`rclpy.node.Node` (``context``, ``namespace``,
            ``parameter_overrides``, ``cli_args`` ...).

    Raises:
        ValueError: a parameter value rclpy refuses (type, range); the message names it.
    """

    def __init__(self, node_name: str = NODE_NAME, *, pool: BackendPool | None = None, **kwargs):
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self, check=False)
        unknown = unknown_parameters(getattr(self, "_parameter_overrides", {}))
        if unknown:  # rclpy ignores overrides of undeclared parameters without a word
            self.get_logger().warning(
                "ignoring parameter(s) this node does not have: " + ", ".join(unknown)
            )
        self._pool = pool if pool is not None else PROCESS_POOL
        self.backend = None
        self.metadata = None
        self.model_path: Path | None = None
        self.pipeline: Pipeline | None = None
        self.palette = None
        self.compressed = self.params["input_transport"] == "compressed"
        self.publishers_by_topic: dict = {}
        self._input_subs: list = []
        self._subscribed_since: float | None = None
        self._active = False
        self._configure_error = ""
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._pipeline_lock = threading.Lock()
        self._reason_loggers: dict = {}
        self._warned_once: set[str] = set()
        self.stats = PerceptionStats(window_s=self.params["diagnostics_window_s"])
        self.slot = LatestSlot()
        self.matcher = CameraInfoMatcher(self.params["camera_info_sync"])
        self._debug_delay_s = 0.0
        self.diag_info: dict = {}
        self._state: _WorkerState | None = None  # the worker's reused buffers and messages

        self._builders = {
            "depth/image": self._depth_msg,
            "depth/camera_info": self._camera_info_builder("depth"),
            "depth/image/compressedDepth": self._depth_compressed_msg,
            "segmentation/labels": self._labels_msg,
            "segmentation/camera_info": self._camera_info_builder("labels"),
            "segmentation/labels/compressed": self._labels_compressed_msg,
            "segmentation/color": self._color_msg,
            "segmentation/color/compressed": self._color_compressed_msg,
            "normals/image": self._normals_msg,
            "normals/camera_info": self._camera_info_builder("normals"),
            "normals/color": self._normals_color_msg,
            "points": self._points_msg,
            "confidence/image": self._confidence_msg,
            "confidence/camera_info": self._camera_info_builder("confidence"),
        }
        missing = sorted({t.name for t in OUTPUT_TOPICS} - set(self._builders))
        if missing:
            raise RuntimeError(f"no message builder for output topic(s) {missing}")
        self.pub_diag = self.create_publisher(
            DiagnosticArray,
            "/diagnostics",
            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.create_timer(self.params["diagnostics_period_s"], self.publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ------------------------------------------------------------------ lifecycle
    @property
    def lifecycle_state(self) -> str:
        """``unconfigured``, ``inactive``, ``active``, ``finalized`` (or a transition state)."""
        return self._state_machine.current_state[1]

    @property
    def configure_error(self) -> str:
        """Why the last ``configure`` failed ("" when it did not)."""
        return self._configure_error

    @property
    def camera_subscribed(self) -> bool:
        """True while the node subscribes to the camera (active, an output has a subscriber)."""
        return bool(self._input_subs)

    def autostart(self) -> bool:
        """Configure then activate (what ``autostart: true`` does); False when a transition
        failed (the reason is logged and kept in :attr:`configure_error`)."""
        if self.trigger_configure() != SUCCESS:
            return False
        return self.trigger_activate() == SUCCESS

    def on_configure(self, state) -> TransitionCallbackReturn:
        self._configure_error = ""
        try:
            self._configure()
        except Exception as exc:  # noqa: BLE001 - a transition reports, it does not raise
            # MODEL_LOAD_ERRORS: missing/corrupt model, SHA-256 mismatch, untrusted checkpoint,
            # no usable backend, invalid parameters; their message says it all
            known = isinstance(exc, MODEL_LOAD_ERRORS)
            why = str(exc) if known else f"{type(exc).__name__}: {exc}"
            self._configure_error = why
            self._release()
            if not self.context.ok():  # a shutdown (Ctrl-C) interrupted it: not a failure
                self.get_logger().info("configure interrupted by shutdown")
            else:
                self.get_logger().error(f"configure failed: {why}")
            return FAILURE
        return SUCCESS

    def _configure(self) -> None:
        p = self.params = {s.name: self.get_parameter(s.name).value for s in PARAMETERS}
        problems = validate(p)
        if problems:
            raise ValueError("invalid parameters:\n  " + "\n  ".join(problems))
        model_path = resolve_model_path(p["model"])
        # every option is part of the pool key: nodes with other threading options do not share
        options = {
            "precision": p["precision"],
            "latency_target_ms": p["latency_target_ms"],
            **{name: p[name] for name in THREAD_OPTIONS},
            # only what the enabled topics are built from runs (ONNX Runtime prunes the graph)
            "outputs": outputs_needed(p) or None,
        }
        if p["engine_cache_dir"]:
            options["cache_dir"] = p["engine_cache_dir"]
        with forward_python_logs(self.get_logger()):
            self.backend, created = self._pool.acquire(
                model_path, backend=p["backend"], device=p["device"] or None, **options
            )
        if p["backend"] not in ("auto", self.backend.name):
            self.get_logger().warning(
                f"backend {p['backend']!r} was requested but cannot run here; using "
                f"{self.backend.name}: {self.backend.reason}"
            )
        self.metadata = self.backend.metadata
        self.model_path = Path(model_path)
        self.pipeline = self._make_pipeline(p["min_depth"], p["max_depth"])
        colors = np.asarray(self.metadata.class_colors, dtype=np.uint8).reshape(-1, 3)
        self.palette = (
            colors
            if len(colors) == self.metadata.num_classes + 1
            else label_palette(self.metadata.num_classes)
        )
        self.stats = PerceptionStats(window_s=p["diagnostics_window_s"])
        self.matcher = CameraInfoMatcher(p["camera_info_sync"], int(p["sync_slop_s"] * 1e9))
        self.compressed = p["input_transport"] == "compressed"
        self._debug_delay_s = p["debug_delay_ms"] / 1e3
        q_out = output_qos(p)
        # one lifecycle publisher per enabled entry of the topic table (ros/topics.py); its
        # matched events drive the camera subscription
        self.publishers_by_topic = {
            t.name: self.create_lifecycle_publisher(
                message_class(t.msg_type),
                t.name,
                q_out,
                event_callbacks=PublisherEventCallbacks(matched=self._on_output_matched),
            )
            for t in OUTPUT_TOPICS
            if p[t.param]
        }
        self.diag_info = {
            "backend": self.backend.name,
            "backend_reason": self.backend.reason,
            "device": self.backend.device,
            "model": f"{self.metadata.architecture} ({self.model_path})",
            "input_transport": p["input_transport"],
        }
        shared = "loaded" if created else f"shared with {self.backend.users - 1} other node(s)"
        self.get_logger().info(
            f"configured: model {self.metadata.architecture} from {self.model_path} ({shared}); "
            f"backend {self.backend.describe()} ({self.backend.reason}); input "
            f"{'image/compressed' if self.compressed else 'image'} + camera_info "
            f"({p['camera_info_sync']}), subscribed while an output has a subscriber"
        )

    def on_activate(self, state) -> TransitionCallbackReturn:
        p = self.params
        self.slot = FifoSlot(p["queue_size"]) if p["queue_size"] > 0 else LatestSlot()
        self._stop = threading.Event()
        self._worker = threading.Thread(
            target=self._work, args=(self._stop, self.slot), name="perception_worker", daemon=True
        )
        self._worker.start()
        ret = super().on_activate(state)  # enables the lifecycle publishers
        self._active = True
        self._update_input_subscriptions()
        return ret

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._active = False
        self._update_input_subscriptions()
        self._stop_worker()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.close()
        return SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self.get_logger().error(f"error processing from {state.label}: releasing everything")
        self.close()
        return SUCCESS

    def _stop_worker(self) -> None:
        self._stop.set()
        self.slot.close()
        worker, self._worker = self._worker, None
        if worker is not None and worker.is_alive() and worker is not threading.current_thread():
            worker.join(timeout=10.0)

    def _release(self) -> None:
        """Destroy the output publishers and release the backend (cleanup)."""
        for pub in self.publishers_by_topic.values():
            self.destroy_lifecycle_publisher(pub)
        self.publishers_by_topic = {}
        backend, self.backend = self.backend, None
        with self._pipeline_lock:
            self.pipeline = None
        if self._state is not None:  # the worker is stopped: its buffers go too
            self._state = None
            release_freed_memory()
        if backend is not None:
            backend.close()

    def close(self) -> None:
        """Unsubscribe, stop and join the worker, destroy the outputs, release the backend.
        Idempotent; used on shutdown and before ``destroy_node``."""
        self._active = False
        self._update_input_subscriptions()
        self._stop_worker()
        self._release()

    # ------------------------------------------------------------------ lazy camera subscription
    def _on_output_matched(self, info) -> None:
        self._update_input_subscriptions()

    def output_subscriber_count(self) -> int:
        """Subscribers over all output publishers (``/diagnostics`` not counted)."""
        return sum(pub.get_subscription_count() for pub in self.publishers_by_topic.values())

    def _update_input_subscriptions(self) -> None:
        """Subscribe the camera while active and some output has a subscriber; else not
        (as depth_image_proc does with its publisher matched events)."""
        want = self._active and self.output_subscriber_count() > 0
        if want and not self._input_subs:
            q_in = input_qos(self.params)
            # samples the middleware lost before our callback (e.g. a frame larger than the
            # shared-memory segment sent best-effort): counted, never silent
            lost = SubscriptionEventCallbacks(message_lost=self._on_message_lost)
            if self.compressed:
                image = self.create_subscription(
                    CompressedImage, "image/compressed", self._on_image, q_in, event_callbacks=lost
                )
            else:
                image = self.create_subscription(
                    Image, "image", self._on_image, q_in, event_callbacks=lost
                )
            info = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, q_in)
            self._input_subs = [image, info]
            self._subscribed_since = time.monotonic()
            self.get_logger().info(
                f"an output has a subscriber: subscribed to {image.topic_name} and "
                f"{info.topic_name}"
            )
        elif not want and self._input_subs:
            for sub in self._input_subs:
                self.destroy_subscription(sub)
            self._input_subs = []
            self._subscribed_since = None
            if self._active:
                self.get_logger().info("no subscriber to any output: camera unsubscribed")

    # ------------------------------------------------------------------ parameters
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
        names = {c.name for c in changes if c.name in SPECS}
        fixed = sorted(n for n in names if SPECS[n].read_only)
        if fixed and self.lifecycle_state != "unconfigured":
            return SetParametersResult(
                successful=False,
                reason=f"{', '.join(fixed)}: fixed while the node is {self.lifecycle_state}; "
                "set while unconfigured (ros2 lifecycle set <node> cleanup), then configure",
            )
        new = dict(self.params)
        new.update({c.name: c.value for c in changes if c.name in SPECS})
        problems = validate({k: new[k] for k in names}, check_model=False)
        depth_range = (new["min_depth"], new["max_depth"])
        if (
            not problems
            and self.metadata is not None
            and depth_range != (self.params["min_depth"], self.params["max_depth"])
        ):
            try:
                pipeline = self._make_pipeline(*depth_range)
            except ValueError as exc:
                problems.append(str(exc))
            else:
                with self._pipeline_lock:
                    self.pipeline = pipeline
        if problems:
            return SetParametersResult(successful=False, reason="; ".join(problems))
        self.params = new
        self.stats.window_s = float(new["diagnostics_window_s"])
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
        self._skip_warning(reason, message)

    def _on_message_lost(self, info) -> None:
        """The middleware reports camera samples lost before they reached the callback
        (``rmw_message_lost_status_t``): each is counted as a skipped frame with reason
        ``lost_in_transport``, with one rate-limited warning."""
        n = max(int(getattr(info, "total_count_change", 1)), 1)
        for _ in range(n):
            self.stats.frame_skipped("lost_in_transport")
        self._skip_warning(
            "lost_in_transport",
            f"{n} camera message(s) lost by the middleware before reaching the node "
            f"({int(getattr(info, 'total_count', n))} in all): frames larger than the "
            "shared-memory segment, or a best-effort link that drops fragments "
            "(docs/contracts.md, input limits)",
        )

    def _skip_warning(self, reason: str, message: str) -> None:
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
        info = dict(self.diag_info)
        backend = self.backend
        if backend is not None:
            info["backend_users"] = backend.users
            info["batch_mean"] = backend.runner_stats.mean_batch
        since = self._subscribed_since
        node_state = {
            "lifecycle_state": self.lifecycle_state,
            "configure_error": self._configure_error,
            "camera_subscribed": self.camera_subscribed,
            "subscribed_for_s": None if since is None else time.monotonic() - since,
        }
        arr = build_diagnostic_array(
            self.stats.snapshot(),
            info,
            self.get_clock().now().to_msg(),
            f"joint_perception: {self.get_fully_qualified_name()}",
            self.metadata.architecture if self.metadata is not None else "",
            node_state,
        )
        self.pub_diag.publish(arr)

    # ------------------------------------------------------------------ worker
    def _work(self, stop: threading.Event, slot) -> None:
        while not stop.is_set():
            item = slot.take(timeout=0.2)
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
        return set(outputs_of(self.subscribed_topics()))

    def _decode(self, msg) -> np.ndarray | None:
        """Image or CompressedImage -> HxWx3 uint8 RGB, or None (skipped and counted).

        Frames above ``max_input_pixels`` are refused before their pixels are allocated (raw:
        the declared size; compressed: the size in the PNG/JPEG header), compressed bytes whose
        magic is not the declared codec's are refused too; each reason is counted apart.
        """
        max_pixels = self.params["max_input_pixels"]
        if self.compressed:
            if len(msg.data) == 0:
                self._skip(EMPTY_IMAGE, "compressed image with empty data; frame skipped")
                return None
            try:
                return conversions.compressed_msg_to_rgb(msg, max_pixels=max_pixels)
            except InputTooLargeError as exc:
                self._skip(INPUT_TOO_LARGE, f"compressed image refused on its header: {exc}")
                return None
            except CompressedFormatMismatch as exc:
                self._skip(COMPRESSED_FORMAT_MISMATCH, f"compressed image refused: {exc}")
                return None
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
                msg.encoding,
                msg.height,
                msg.width,
                msg.step,
                msg.data,
                msg.is_bigendian,
                max_pixels=max_pixels,
            )
        except InputTooLargeError as exc:
            self._skip(INPUT_TOO_LARGE, f"image refused on its declared size: {exc}")
            return None
        except ImageFormatError as exc:
            self._skip(MALFORMED_IMAGE, f"malformed image: {exc}")
            return None

    def _intrinsics(self, info: CameraInfo, height: int, width: int) -> np.ndarray | None:
        """3x3 K of the (height, width) image, or None (skipped and counted).

        K is the CameraInfo's with its binning and ROI applied (the K of the image size the
        CameraInfo describes, ``camera_info_image_size``); an image of another size gets that
        K scaled to it, with a one-time warning. Absurd intrinsics for the described size
        (:func:`joint_perception.geometry.intrinsics_problem`: a field of view outside
        0.01..179 degrees, e.g. fx = 1e-300 or a binning that leaves no pixel, a principal point
        far outside the image) skip the frame as ``absurd_camera_info``.
        """
        try:
            K = conversions.camera_info_to_K(info)
        except ValueError as exc:
            self._skip(INVALID_CAMERA_INFO, f"unusable CameraInfo: {exc}; frame skipped")
            return None
        described = conversions.camera_info_image_size(info)
        problem = intrinsics_problem(K, described[1], described[0])
        if problem:
            self._skip(
                ABSURD_CAMERA_INFO,
                f"CameraInfo (frame {info.header.frame_id!r}) unusable: {problem}; frame skipped",
            )
            return None
        if conversions.camera_info_is_distorted(info):
            self._warn_once(
                "distorted_camera_info",
                f"CameraInfo has distortion ({info.distortion_model}, D={list(info.d)});"
                " the network expects rectified images: rectification is the camera"
                " driver's job (e.g. image_proc). Processing as if rectified.",
            )
        if described != (height, width):
            self._warn_once(
                "camera_info_size_mismatch",
                f"CameraInfo describes a {described[1]}x{described[0]} image (calibrated "
                f"{info.width}x{info.height}, binning {info.binning_x}x{info.binning_y}, ROI "
                f"{info.roi.width}x{info.roi.height}+{info.roi.x_offset}+{info.roi.y_offset})"
                f" but the image is {width}x{height}; scaling K to the image",
            )
            K = scale_intrinsics(K, described, (height, width))
        return K

    def process(self, msg, info: CameraInfo, recv_time: float) -> bool:
        """Process one paired frame and publish its outputs; False when it was skipped (or
        nobody subscribes to an output any more: then it is not even decoded).

        Args:
            msg: sensor_msgs Image or CompressedImage.
            info: the CameraInfo paired with it.
            recv_time: ``time.monotonic()`` when the image callback ran (latency origin).
        """
        t0 = time.perf_counter()
        topics = self.subscribed_topics()
        want = outputs_of(topics)
        if not want:
            self.stats.frame_idle()
            return False
        with self._pipeline_lock:
            pipeline = self.pipeline
        if pipeline is None:
            return False
        problem = conversions.frame_id_problem(msg.header.frame_id)
        if problem:
            # REP 105: an output nobody can place in the TF tree is worse than none
            self._skip(
                EMPTY_FRAME_ID, f"image {problem}; frame skipped (set the driver's frame_id)"
            )
            return False
        rgb = self._decode(msg)
        if rgb is None:
            return False
        h, w = rgb.shape[:2]
        K = self._intrinsics(info, h, w)
        if K is None:
            return False
        t_decode = time.perf_counter()
        meta = self.metadata
        out_size = (
            (h, w)
            if self.params["output_resolution"] == "input"
            else (meta.input_height, meta.input_width)
        )
        state = self._worker_state((h, w), out_size)
        colour = any(t.startswith("segmentation/color") for t in topics)
        palette = self.palette if colour and self.params["color_overlay_alpha"] == 0 else None
        result = pipeline.run(
            rgb,
            K,
            out_size=out_size,
            want=want,
            buffers=state.buffers,
            palette=palette,
            normals_color="normals/color" in topics,
        )
        t_pub = time.perf_counter()
        try:
            frame = _Frame(msg.header, info, rgb, result, out_size, state)
            ready = self._build_messages(frame, topics)
        except Exception as exc:  # noqa: BLE001 - the whole frame is skipped, counted, logged
            self._skip(
                PUBLISH_FAILED,
                f"building the outputs failed ({type(exc).__name__}: {exc}); nothing of this "
                "frame was published",
            )
            return False
        t_built = time.perf_counter()
        for pub, out in ready:
            pub.publish(out)
        t_end = time.perf_counter()
        stages = {
            "decode": (t_decode - t0) * 1e3,
            **result.timings_ms,
            "publish": (t_end - t_pub) * 1e3,  # building + publishing, as before
            "build": (t_built - t_pub) * 1e3,
        }
        self.stats.frame_processed((time.monotonic() - recv_time) * 1e3, stages)
        return True

    def _worker_state(self, in_size, out_size) -> _WorkerState:
        """The worker's reused state for frames of ``in_size`` -> ``out_size``: the same one
        while the size is steady; a new one when it changes, the old buffers dropped (after a
        larger frame, the freed memory is handed back to the kernel: ``malloc_trim``)."""
        size = (tuple(in_size), tuple(out_size))
        state = self._state
        if state is not None and state.size == size:
            return state
        shrinking = state is not None and _WorkerState.pixels(state.size) > _WorkerState.pixels(
            size
        )
        self._state = state = None  # the old buffers and messages are garbage from here
        if shrinking:  # the large frame's cached rays go too, then the heap is trimmed
            clear_ray_caches()
            release_freed_memory()
        self._state = _WorkerState(size)
        return self._state

    def _build_messages(self, frame: _Frame, topics: list[str]) -> list:
        """``[(publisher, message)]`` of the ``topics`` (subscribed ones), all built before any
        is published (the caller publishes them: no half-published frame; the image messages
        hold the worker's buffers, so they are published before the next frame is processed).

        Raises:
            whatever a builder raises (ValueError for a NaN P matrix, MemoryError ...): the
            caller then publishes nothing of this frame.
        """
        ready = []
        for name in topics:
            msg = self._builders[name](frame)
            if msg is not None:  # the model lacks that output
                ready.append((self.publishers_by_topic[name], msg))
        return ready

    # ------------------------------------------------------------------ message builders
    # one per topic of ros/topics.py; None = the model lacks that output
    def _camera_info_builder(self, output: str):
        def build(f: _Frame):
            return None if getattr(f.result, output) is None else f.camera_info()

        return build

    def _depth_msg(self, f: _Frame):
        if f.result.depth is None:
            return None
        return f.image_msg("depth/image", f.result.depth, "depth", "32FC1")

    def _depth_compressed_msg(self, f: _Frame):
        if f.result.depth is None:
            return None
        p = self.params
        fmt, data = encode_compressed_depth(
            f.result.depth,
            depth_max=p["compressed_depth.depth_max"] or self.pipeline.max_depth,
            depth_quantization=p["compressed_depth.depth_quantization"],
            png_level=p["compressed.png_level"],
        )
        return conversions.compressed_msg(fmt, data, f.header)

    def _labels_encoding(self, f: _Frame) -> str:
        return "mono8" if f.result.labels.dtype == np.uint8 else "mono16"

    def _labels_msg(self, f: _Frame):
        if f.result.labels is None:
            return None
        return f.image_msg(
            "segmentation/labels", f.result.labels, "labels", self._labels_encoding(f)
        )

    def _labels_compressed_msg(self, f: _Frame):
        if f.result.labels is None:
            return None
        fmt, data = encode_compressed(
            f.result.labels,
            self._labels_encoding(f),
            "png",  # class ids: lossless only
            png_level=self.params["compressed.png_level"],
        )
        return conversions.compressed_msg(fmt, data, f.header)

    def _color_array(self, f: _Frame) -> np.ndarray:
        """Colour-coded labels ((h, w, 3) uint8): the pipeline's ``result.color`` (coded at
        the network size into the reused buffer) unless blended over the input image."""
        if "color" not in f.cache:
            alpha = self.params["color_overlay_alpha"]
            color = f.result.color
            if color is None or alpha > 0:
                color = colorize_labels(f.result.labels, self.palette)
            if alpha > 0:
                color = overlay(f.rgb_at_output(), color, alpha)
            f.cache["color"] = color
        return f.cache["color"]

    def _color_msg(self, f: _Frame):
        if f.result.labels is None:
            return None
        color = self._color_array(f)
        if color is f.result.color:  # in the reused buffer: the message holds it, no copy
            return f.image_msg("segmentation/color", color, "color", "rgb8")
        return conversions.array_to_image_msg(color, "rgb8", f.header)

    def _color_compressed_msg(self, f: _Frame):
        if f.result.labels is None:
            return None
        p = self.params
        fmt, data = encode_compressed(
            self._color_array(f),
            "rgb8",
            p["compressed.color_format"],
            jpeg_quality=p["compressed.jpeg_quality"],
            png_level=p["compressed.png_level"],
        )
        return conversions.compressed_msg(fmt, data, f.header)

    def _normals_msg(self, f: _Frame):
        if f.result.normals is None:
            return None
        return f.image_msg("normals/image", f.result.normals, "normals", "32FC3")

    def _normals_color_msg(self, f: _Frame):
        if f.result.normals is None:
            return None
        # coded by the pipeline, which process() asks for it whenever this topic is built
        return f.image_msg("normals/color", f.result.normals_color, "normals.color", "rgb8")

    def _confidence_msg(self, f: _Frame):
        if f.result.confidence is None:
            return None
        return f.image_msg("confidence/image", f.result.confidence, "confidence", "32FC1")

    def _points_msg(self, f: _Frame):
        if f.result.depth is None:
            return None
        state = f.state
        packed = pack_depth(
            f.result.depth,
            f.result.K,
            rgb=f.rgb_at_output(),
            labels=f.result.labels,
            decimation=self.params["points_decimation"],
            buffers=state.buffers,
            name="points",
        )
        state.msgs["points"] = conversions.cloud_msg_over_buffer(
            packed, state.buffers.storage("points"), f.header, state.msgs.get("points")
        )
        return state.msgs["points"]


# ---------------------------------------------------------------------- several cameras, main

_NAMESPACE_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def camera_namespaces(cameras: list[str], base: str = "/") -> list[str]:
    """Absolute namespaces of ``cameras``: absolute names as given, relative ones under
    ``base`` (the process namespace, e.g. launch's ``namespace``).

    Raises:
        ValueError: an invalid ROS namespace, or two cameras with the same namespace.
    """
    out = []
    for cam in cameras:
        ns = cam if cam.startswith("/") else f"{base.rstrip('/')}/{cam}"
        tokens = ns.strip("/").split("/")
        if not all(_NAMESPACE_TOKEN.match(t) for t in tokens):
            raise ValueError(
                f"camera {cam!r}: not a valid ROS namespace (letters, digits and _ separated "
                "by /, not starting with a digit)"
            )
        out.append("/" + "/".join(tokens))
    dup = sorted({n for n in out if out.count(n) > 1})
    if dup:
        raise ValueError(f"cameras with the same namespace: {', '.join(dup)}")
    return out


def _process_namespace(context=None) -> str:
    """The namespace the process's global arguments (``__ns``) give a node."""
    probe = rclpy.create_node(
        "jp_namespace_probe", context=context, start_parameter_services=False, enable_rosout=False
    )
    try:
        return probe.get_namespace()
    finally:
        probe.destroy_node()


def make_nodes(
    cameras: list[str] | None = None, pool: BackendPool | None = None, **node_kwargs
) -> list[PerceptionNode]:
    """One :class:`PerceptionNode` (no ``cameras``), or one per camera namespace, all named
    ``perception_node``, all taking their backend from ``pool`` (so one model in memory).

    Each camera node gets a node-local ``__ns`` remap (local arguments win over the global
    ``__ns`` a launch file passes, which would otherwise give every node the same namespace);
    its topics, CameraInfo, parameters (``/<ns>/perception_node:`` keys or ``/**``) and
    diagnostics are its own.

    Raises:
        ValueError: invalid or duplicate camera namespaces; parameter values rclpy refuses.
    """
    if not cameras:
        return [PerceptionNode(NODE_NAME, pool=pool, **node_kwargs)]
    base = _process_namespace(node_kwargs.get("context"))
    namespaces = camera_namespaces(cameras, base)
    cli_args = list(node_kwargs.pop("cli_args", None) or [])
    nodes = []
    try:
        for ns in namespaces:
            cli = [*cli_args, "--ros-args", "-r", f"__ns:={ns}"]
            nodes.append(PerceptionNode(NODE_NAME, pool=pool, cli_args=cli, **node_kwargs))
    except BaseException:
        for node in nodes:
            node.destroy_node()
        raise
    return nodes


def _parse_cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="perception_node",
        description="joint_perception perception node (ROS arguments follow --ros-args).",
    )
    parser.add_argument(
        "--cameras",
        nargs="+",
        default=[],
        metavar="NS",
        help="run one node per camera namespace in this process, sharing one model "
        "(comma- or space-separated, e.g. --cameras front,rear); relative names go under "
        "the process namespace",
    )
    args = parser.parse_args(argv)
    args.cameras = [c for item in args.cameras for c in item.split(",") if c]
    return args


def main(args: list[str] | None = None) -> int:
    """Console script ``perception_node``: spin until SIGINT/SIGTERM; returns the exit code.

    ``--cameras a,b`` runs one node per camera in this process (:func:`make_nodes`). Each node
    with ``autostart`` is configured and activated before spinning.

    Before ``rclpy.init`` it sets the process-wide runtime settings (issue 13): glibc keeps
    freed multi-MB buffers (:func:`joint_perception.allocator.keep_freed_memory`) and OpenCV
    runs in the calling thread (:func:`joint_perception.runtime.threads.limit_opencv_threads`).

    Returns:
        0 after SIGINT/SIGTERM, also when it arrives during start-up (no traceback; logged as
        an interruption, not as a configuration failure); 2 when parameters are invalid or the
        model/backend cannot load with ``autostart`` (``cannot start: <reason>``,
        :data:`joint_perception.runtime.factory.MODEL_LOAD_ERRORS`).
    """
    from joint_perception.allocator import keep_freed_memory
    from joint_perception.runtime.threads import limit_opencv_threads

    keep_freed_memory()
    limit_opencv_threads(1)
    argv = list(sys.argv if args is None else args)
    previous_sigint = signal.getsignal(signal.SIGINT)
    previous_sigterm = signal.getsignal(signal.SIGTERM)
    rclpy.init(args=argv)
    logger = rclpy.logging.get_logger(NODE_NAME)
    nodes: list[PerceptionNode] = []
    executor = None
    code = 0
    spinning = False
    try:
        cli = _parse_cli(remove_ros_args(argv)[1:])
        nodes = make_nodes(cli.cameras)
        executor = SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        for node in nodes:
            if node.params["autostart"] and not node.autostart():
                if rclpy.ok():  # not a shutdown that interrupted the start
                    why = node.configure_error or "activate failed"
                    logger.fatal(f"{node.get_fully_qualified_name()}: {cannot_start_message(why)}")
                    code = 2
                else:
                    logger.info("interrupted during start-up: exiting (not a failure)")
                return code
        spinning = True
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        if not spinning:
            logger.info("interrupted during start-up: exiting (not a failure)")
    except MODEL_LOAD_ERRORS as exc:  # parameter values rclpy refused, bad --cameras, ...
        if spinning:  # not a start-up problem: keep the traceback
            raise
        if rclpy.ok():
            logger.fatal(cannot_start_message(exc))
            code = 2
        else:  # a SIGINT shut the context down under the node's creation ("context is not
            # valid"): an interruption, as in the autostart branch above
            logger.info("interrupted during start-up: exiting (not a failure)")
    finally:
        # Ctrl-C in a terminal reaches this process twice (the terminal's process group and
        # ros2 launch), and launch escalates to SIGTERM when the clean-up takes longer than
        # its sigterm_timeout: neither may interrupt the clean-up. rclpy's shutdown puts back
        # the handlers it found at init, so they are ignored again after it.
        _ignore_exit_signals()
        for node in nodes:
            node.close()
        if executor is not None:
            executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
        _ignore_exit_signals()
        signal.signal(signal.SIGINT, previous_sigint)
        signal.signal(signal.SIGTERM, previous_sigterm)
    return code


def _ignore_exit_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    raise SystemExit(main())
