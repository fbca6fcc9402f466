"""Run-time statistics of the perception node and their ``/diagnostics`` message.

:class:`PerceptionStats` (ROS-free, thread-safe) accumulates what the node reports: frames
received / processed / dropped (newest-frame-only overwrites), skipped frames by reason (bad
input), processing rate, end-to-end latency inside the node (callback receipt -> last output
published) and per-stage times. :func:`build_diagnostic_array` turns a snapshot into a
``diagnostic_msgs/DiagnosticArray`` (one ``DiagnosticStatus`` whose key/values are listed in
:data:`VALUE_KEYS` plus ``skipped_<reason>`` and ``stage_<name>_p50_ms``);
:func:`status_values` reads them back (used by replay and tests).

Percentiles are over a rolling window of the last ``window`` frames.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np

VALUE_KEYS = (
    "frames_received",
    "frames_processed",
    "frames_dropped",
    "frames_skipped",
    "frames_idle",
    "rate_hz",
    "latency_p50_ms",
    "latency_p95_ms",
    "backend",
    "backend_reason",
    "device",
    "model",
    "input_transport",
)


class PerceptionStats:
    """Thread-safe counters and rolling timing windows of the node.

    Args:
        window: number of most recent frames the rate and percentiles are computed over.
        clock: monotonic time source in seconds (injectable for tests).
    """

    def __init__(self, window: int = 100, clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.idle = 0
        self.skipped: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._done_at: deque[float] = deque(maxlen=window)
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
        """A consistent copy: counters, ``rate_hz``, ``latency_p50_ms``/``p95``, ``stages_p50_ms``.

        Rate is frames processed per second over the window (0 with fewer than two frames);
        percentiles are NaN before the first frame.
        """
        with self._lock:
            lat = np.asarray(self._latency_ms, dtype=np.float64)
            done = list(self._done_at)
            rate = 0.0
            if len(done) >= 2 and done[-1] > done[0]:
                rate = (len(done) - 1) / (done[-1] - done[0])
            return {
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "frames_skipped": sum(self.skipped.values()),
                "frames_idle": self.idle,
                "skipped": dict(self.skipped),
                "warnings": dict(self.warnings),
                "rate_hz": rate,
                "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
                "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
                "stages_p50_ms": {k: float(np.median(v)) for k, v in self._stages.items() if v},
            }


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.3f}"
    return str(value)


def build_diagnostic_array(snapshot: dict, info: dict, stamp, name: str, hardware_id: str):
    """A ``diagnostic_msgs/DiagnosticArray`` with one status for the node.

    Args:
        snapshot: :meth:`PerceptionStats.snapshot`.
        info: static strings: backend, backend_reason, device, model, input_transport.
        stamp: ``builtin_interfaces/Time`` for the array header (diagnostics are about the
            node, not a frame, so this one is the node clock's now).
        name: status name, e.g. ``"joint_perception: /ns/perception_node"``.
        hardware_id: e.g. the model name.

    Level: OK while frames are processed; WARN when frames were skipped (bad input) or no
    frame was processed yet; the message says why.
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    values = {k: snapshot[k] for k in VALUE_KEYS if k in snapshot}
    values.update({k: info.get(k, "") for k in VALUE_KEYS if k not in snapshot})
    for reason, n in sorted(snapshot.get("skipped", {}).items()):
        values[f"skipped_{reason}"] = n
    for reason, n in sorted(snapshot.get("warnings", {}).items()):
        values[f"warning_{reason}"] = n
    for stage, ms in sorted(snapshot.get("stages_p50_ms", {}).items()):
        values[f"stage_{stage}_p50_ms"] = ms

    status = DiagnosticStatus(name=name, hardware_id=hardware_id)
    if snapshot["frames_skipped"]:
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted(snapshot["skipped"].items()))
        status.level, status.message = DiagnosticStatus.WARN, f"frames skipped: {reasons}"
    elif snapshot["frames_processed"] == 0:
        status.level, status.message = DiagnosticStatus.WARN, "no frame processed yet"
    else:
        status.level = DiagnosticStatus.OK
        status.message = f"{snapshot['rate_hz']:.1f} Hz, p50 {snapshot['latency_p50_ms']:.1f} ms"
    status.values = [KeyValue(key=k, value=_fmt(v)) for k, v in values.items()]
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = stamp
    return arr


def status_values(status) -> dict[str, str]:
    """``{key: value}`` of a ``DiagnosticStatus`` (values stay strings)."""
    return {kv.key: kv.value for kv in status.values}
