"""Run-time statistics of the perception node and their ``/diagnostics`` message.

:class:`PerceptionStats` (ROS-free, thread-safe) accumulates what the node reports: frames
received / processed / dropped (newest-frame-only overwrites), skipped frames by reason (bad
input), processing rate, end-to-end latency inside the node (callback receipt -> last output
published) and per-stage times. :func:`build_diagnostic_array` turns a snapshot into a
``diagnostic_msgs/DiagnosticArray`` (one ``DiagnosticStatus`` whose key/values are listed in
:data:`VALUE_KEYS` plus ``skipped_<reason>`` and ``stage_<name>_p50_ms``);
:func:`status_values` reads them back (used by replay and tests).

Counters (``frames_*``, ``skipped_*``) are totals since the node was configured. The *level*
and the rate look back over a time window only (``diagnostics_window_s``,
:func:`diagnostic_level`): a frame skipped once at start-up (an image before the first
CameraInfo) gives WARN until frames have flowed without a skip for one window, then OK again.
Latency percentiles are over the last ``window`` frames.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

VALUE_KEYS = (
    "lifecycle_state",
    "frames_received",
    "frames_processed",
    "frames_dropped",
    "frames_skipped",
    "frames_idle",
    "frames_skipped_in_window",
    "rate_hz",
    "latency_p50_ms",
    "latency_p95_ms",
    "camera_subscribed",
    "backend",
    "backend_reason",
    "backend_users",
    "batch_mean",
    "device",
    "model",
    "input_transport",
)


class PerceptionStats:
    """Thread-safe counters, rolling timing windows and recent events of the node.

    Args:
        window: number of most recent frames the latency/stage percentiles use.
        window_s: seconds the windowed values (rate, recent skips) look back.
        clock: monotonic time source in seconds (injectable for tests).
    """

    def __init__(self, window: int = 100, window_s: float = 5.0, clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.window_s = float(window_s)
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.idle = 0
        self.skipped: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._done_at: deque[float] = deque(maxlen=10_000)
        self._skipped_at: deque[tuple[float, str]] = deque(maxlen=10_000)
        self._stages: dict[str, deque[float]] = {}
        self._window = window

    def frame_received(self, dropped: bool = False) -> None:
        """A frame entered the slot; ``dropped``: it overwrote an unprocessed one."""
        with self._lock:
            self.received += 1
            self.dropped += int(dropped)

    def frame_dropped(self, n: int = 1) -> None:
        """Frames lost without processing (overwritten or displaced while waiting)."""
        with self._lock:
            self.dropped += n

    def frame_skipped(self, reason: str) -> None:
        """A frame was refused (bad input); ``reason`` is a short snake_case key."""
        with self._lock:
            self.skipped[reason] += 1
            self._skipped_at.append((self._clock(), reason))

    def frame_idle(self) -> None:
        """A valid frame was not processed because no output had a subscriber."""
        with self._lock:
            self.idle += 1

    def warned(self, reason: str) -> None:
        """A frame was processed but something about it deserves a warning (e.g. distortion)."""
        with self._lock:
            self.warnings[reason] += 1

    def frame_processed(self, latency_ms: float, stages_ms: dict[str, float]) -> None:
        """A frame's outputs were published after ``latency_ms``; ``stages_ms`` per stage."""
        with self._lock:
            self.processed += 1
            self._latency_ms.append(float(latency_ms))
            self._done_at.append(self._clock())
            for name, ms in stages_ms.items():
                self._stages.setdefault(name, deque(maxlen=self._window)).append(float(ms))

    def snapshot(self) -> dict:
        """A consistent copy: counters, windowed values, latency percentiles, stage medians.

        Keys: ``frames_*`` totals, ``skipped``/``warnings`` by reason (totals),
        ``recent_skipped`` by reason and ``frames_skipped_in_window`` (last ``window_s``),
        ``rate_hz`` (frames processed per second over the last ``window_s``: 0 with fewer than
        two), ``last_processed_age_s`` (None before the first frame), ``latency_p50_ms`` /
        ``p95`` (NaN before the first frame), ``stages_p50_ms``, ``window_s``.
        """
        with self._lock:
            now = self._clock()
            since = now - self.window_s
            lat = np.asarray(self._latency_ms, dtype=np.float64)
            done = [t for t in self._done_at if t >= since]
            rate = 0.0
            if len(done) >= 2 and done[-1] > done[0]:
                rate = (len(done) - 1) / (done[-1] - done[0])
            recent = Counter(r for t, r in self._skipped_at if t >= since)
            return {
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_skipped": sum(self.skipped.values()),
                "frames_idle": self.idle,
                "skipped": dict(self.skipped),
                "warnings": dict(self.warnings),
                "recent_skipped": dict(recent),
                "frames_skipped_in_window": sum(recent.values()),
                "rate_hz": rate,
                "last_processed_age_s": (now - self._done_at[-1]) if self._done_at else None,
                "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "stages_p50_ms": {k: float(np.median(v)) for k, v in self._stages.items() if v},
                "window_s": self.window_s,
            }


def diagnostic_level(snapshot: dict, node_state: dict) -> tuple[int, str]:
    """``(DiagnosticStatus level, message)`` of the node now.

    Args:
        snapshot: :meth:`PerceptionStats.snapshot` (``window_s`` is the look-back).
        node_state: ``lifecycle_state`` (``unconfigured`` / ``inactive`` / ``active`` /
            ``finalized``), ``configure_error`` (message of the last failed configure, or
            ""), ``camera_subscribed`` (bool), ``subscribed_for_s`` (seconds since the camera
            subscription was made, or None).

    Levels (0 OK, 1 WARN, 2 ERROR): ERROR after a failed configure; OK while unconfigured,
    inactive, or active with nobody subscribed to an output (the camera is not subscribed);
    WARN while frames were skipped within the window, or when the camera has been subscribed
    for a whole window without a frame processed in it; OK otherwise.
    """
    state = node_state.get("lifecycle_state", "active")
    window = snapshot.get("window_s", 5.0)
    if node_state.get("configure_error"):
        return 2, f"configure failed: {node_state['configure_error']}"
    if state != "active":
        return 0, f"{state} (lifecycle)"
    recent = snapshot.get("recent_skipped", {})
    if recent:
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted(recent.items()))
        return 1, f"frames skipped in the last {window:g} s: {reasons}"
    if not node_state.get("camera_subscribed", True):
        return 0, "idle: no subscriber to any output, camera not subscribed"
    age = snapshot.get("last_processed_age_s")
    waited = node_state.get("subscribed_for_s")
    if (age is None or age > window) and waited is not None and waited > window:
        last = "no frame processed yet" if age is None else f"no frame in the last {window:g} s"
        return 1, f"{last}: is the camera publishing?"
    if age is None:
        return 0, "waiting for the first frame"
    return 0, f"{snapshot['rate_hz']:.1f} Hz, p50 {snapshot['latency_p50_ms']:.1f} ms"


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.3f}"
    return str(value)


def build_diagnostic_array(
    snapshot: dict, info: dict, stamp, name: str, hardware_id: str, node_state: dict | None = None
):
    """A ``diagnostic_msgs/DiagnosticArray`` with one status for the node.

    Args:
        snapshot: :meth:`PerceptionStats.snapshot`.
        info: static strings: backend, backend_reason, device, model, input_transport, ...
        stamp: ``builtin_interfaces/Time`` for the array header (diagnostics are about the
            node, not a frame, so this one is the node clock's now).
        name: status name, e.g. ``"joint_perception: /ns/perception_node"``.
        hardware_id: e.g. the model name.
        node_state: see :func:`diagnostic_level` (default: active, camera subscribed).

    Level and message: :func:`diagnostic_level`.
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    node_state = {"lifecycle_state": "active", "camera_subscribed": True, **(node_state or {})}
    merged = {**info, **{k: v for k, v in node_state.items() if k in VALUE_KEYS}, **snapshot}
    values = {k: merged[k] for k in VALUE_KEYS if k in merged}
    for reason, n in sorted(snapshot.get("skipped", {}).items()):
        values[f"skipped_{reason}"] = n
    for reason, n in sorted(snapshot.get("warnings", {}).items()):
        values[f"warning_{reason}"] = n
    for stage, ms in sorted(snapshot.get("stages_p50_ms", {}).items()):
        values[f"stage_{stage}_p50_ms"] = ms

    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    level, status.message = diagnostic_level(snapshot, node_state)
    status.level = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN}.get(
        level, DiagnosticStatus.ERROR
    )
    status.values = [KeyValue(key=k, value=_fmt(v)) for k, v in values.items()]
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = stamp
    return arr


def status_values(status) -> dict[str, str]:
    """``{key: value}`` of a ``DiagnosticStatus`` (values stay strings)."""
    return {kv.key: kv.value for kv in status.values}
