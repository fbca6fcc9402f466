"""Rate control, missed-frame accounting and peak-throughput search for replay benchmarks.

The measurements follow NVIDIA's ros2_benchmark (``ros2_benchmark/basic_performance_calculator``)
so numbers are comparable with Isaac ROS results:

* ``MEAN_PLAYBACK_FRAME_RATE``: frames sent / time between the first and the last send (Hz).
* ``MEAN_FRAME_RATE``: frames received / time between the first and the last receive (Hz).
* ``NUM_FRAMES_SENT``, ``NUM_MISSED_FRAMES``: a sent frame is *missed* when no output with its
  header stamp arrived (the node dropped it as stale, or it was lost).
* ``FIRST_SENT_RECEIVED_LATENCY`` / ``LAST_SENT_RECEIVED_LATENCY``: receive time minus send time
  of the first / last *sent* frame that was received (ms).
* jitter: with ``dt_i`` the intervals between consecutive receive times,
  ``jitter_i = |dt_i - dt_(i-1)|``; MAX/MIN/MEAN/STD_DEV_JITTER in ms.

This module is ROS-free: it paces any ``publish(i)`` callable (:func:`pace`,
:func:`pace_schedule`), rewrites header
stamps so that a bag can be looped to any frame count with unique stamps (:func:`restamp_cdr`,
:func:`loop_schedule`), samples a process's CPU time and resident memory with psutil
(:class:`ProcessMonitor`) and searches the highest sustainable rate
(:func:`find_peak_rate`).
"""

from __future__ import annotations

import math
import os
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "pace",
    "pace_schedule",
    "restamp_cdr",
    "loop_schedule",
    "performance_fields",
    "ProcessMonitor",
    "PeakSearchResult",
    "find_peak_rate",
]


def pace_schedule(
    due_s: Sequence[float],
    publish: Callable[[int], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[float]:
    """Call ``publish(i)`` when ``due_s[i]`` seconds have passed since the start, without drift.

    Deadlines are absolute (relative to the first ``clock()`` reading), so a late call does
    not shift the later ones; when the publisher falls behind, frames go out back to back
    until it has caught up, as a camera driver with a fixed frame clock would.

    Args:
        due_s: non-decreasing offsets in seconds (e.g. ``i / rate`` or recorded bag times).
        publish: called with the frame index; its run time counts against the schedule.
        clock, sleep: monotonic clock in seconds and its sleep (injectable for tests).

    Returns:
        the ``clock()`` value just before each call (seconds), one per entry of ``due_s``.

    Raises:
        ValueError: ``due_s`` decreases or is not finite.
    """
    due = np.asarray(due_s, dtype=np.float64)
    if due.size and (not np.all(np.isfinite(due)) or np.any(np.diff(due) < 0)):
        raise ValueError("due times must be finite and non-decreasing")
    times: list[float] = []
    start = clock()
    for i, d in enumerate(due.tolist()):
        delay = start + d - clock()
        if delay > 0:
            sleep(delay)
        times.append(clock())
        publish(i)
    return times


def pace(
    n_frames: int,
    rate_hz: float,
    publish: Callable[[int], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[float]:
    """Call ``publish(i)`` for ``i = 0 .. n_frames-1`` at a fixed rate: frame ``i`` is due at
    ``i / rate_hz`` s (:func:`pace_schedule`, absolute deadlines).

    Returns:
        the ``clock()`` value just before each call (seconds), length ``n_frames``.

    Raises:
        ValueError: ``rate_hz`` not positive/finite or ``n_frames`` negative.
    """
    if not (rate_hz > 0 and math.isfinite(rate_hz)):
        raise ValueError(f"rate_hz must be a positive finite number, got {rate_hz}")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    return pace_schedule(np.arange(n_frames) / rate_hz, publish, clock, sleep)


def restamp_cdr(raw: bytes, stamp_ns: int) -> bytes:
    """Copy of a CDR-serialised message whose leading ``std_msgs/Header`` stamp is ``stamp_ns``.

    Every sensor_msgs type replayed here (Image, CompressedImage, CameraInfo) starts with a
    Header: 4-byte encapsulation (CDR big- or little-endian), then int32 ``sec`` and uint32
    ``nanosec`` (ROS 2 ``builtin_interfaces/Time``). Only those 8 bytes change.

    Args:
        raw: the serialised message.
        stamp_ns: new stamp in nanoseconds since the epoch (>= 0).

    Raises:
        ValueError: not a CDR buffer, or a negative stamp.
    """
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        raise ValueError("not a CDR buffer starting with a std_msgs/Header")
    if stamp_ns < 0:
        raise ValueError(f"stamp must be >= 0 ns, got {stamp_ns}")
    endian = "<" if raw[1] == 1 else ">"
    out = bytearray(raw)
    struct.pack_into(endian + "iI", out, 4, stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
    return bytes(out)


def loop_schedule(stamps_ns: Sequence[int], n_frames: int) -> list[tuple[int, int]]:
    """Which bag frame to send as the i-th frame, and its (unique) header stamp.

    The bag is looped until ``n_frames`` frames are scheduled. Pass ``k`` (0-based) re-sends
    the bag shifted by ``k * (span + gap)`` where ``span`` is the bag's stamp range and
    ``gap`` its mean frame spacing (1 s for a one-frame bag), so stamps stay increasing and
    unique and outputs pair with sends by stamp. Pass 0 keeps the recorded stamps.

    Args:
        stamps_ns: header stamps of the bag's frames in bag order (non-empty).
        n_frames: total frames to send (>= 0).

    Returns:
        ``[(bag_index, stamp_ns), ...]`` of length ``n_frames``.

    Raises:
        ValueError: empty ``stamps_ns`` or negative ``n_frames``.
    """
    if len(stamps_ns) == 0:
        raise ValueError("cannot loop an empty bag")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    n = len(stamps_ns)
    span = max(stamps_ns) - min(stamps_ns)
    gap = span // (n - 1) if n > 1 and span > 0 else 1_000_000_000
    shift = span + gap
    return [(i % n, int(stamps_ns[i % n]) + (i // n) * shift) for i in range(n_frames)]


def _stats_ms(values_s: np.ndarray) -> tuple[float, float, float, float]:
    v = values_s * 1e3
    return float(v.max()), float(v.min()), float(v.mean()), float(v.std())


def performance_fields(sent: Mapping[int, float], received: Mapping[int, float]) -> dict:
    """ros2_benchmark-style throughput/latency/jitter fields (see the module docstring).

    Args:
        sent: ``{header stamp ns: send time s}`` of every frame sent.
        received: ``{header stamp ns: receive time s}`` of the first output of each frame
            (same clock as ``sent``; stamps never sent are ignored).

    Returns:
        dict with MEAN_PLAYBACK_FRAME_RATE, MEAN_FRAME_RATE (Hz), NUM_FRAMES_SENT,
        NUM_FRAMES_RECEIVED, NUM_MISSED_FRAMES, MISSED_FRAME_FRACTION, FIRST/LAST_SENT_RECEIVED
        _LATENCY, MEAN_LATENCY, P50_LATENCY, P95_LATENCY, MAX_LATENCY (ms), MAX/MIN/MEAN/
        STD_DEV_JITTER (ms). Fields that need more frames than there are (a rate from one
        frame, jitter from fewer than three) are None.
    """
    sent_stamps = sorted(sent, key=lambda s: sent[s])
    got = [s for s in sent_stamps if s in received]
    out: dict = {
        "NUM_FRAMES_SENT": len(sent_stamps),
        "NUM_FRAMES_RECEIVED": len(got),
        "NUM_MISSED_FRAMES": len(sent_stamps) - len(got),
        "MISSED_FRAME_FRACTION": (len(sent_stamps) - len(got)) / len(sent_stamps)
        if sent_stamps
        else None,
    }
    t_sent = np.array([sent[s] for s in sent_stamps], dtype=np.float64)
    t_recv = np.sort(np.array([received[s] for s in got], dtype=np.float64))
    span_s = t_sent[-1] - t_sent[0] if t_sent.size > 1 else 0.0
    span_r = t_recv[-1] - t_recv[0] if t_recv.size > 1 else 0.0
    out["MEAN_PLAYBACK_FRAME_RATE"] = (t_sent.size - 1) / span_s if span_s > 0 else None
    out["MEAN_FRAME_RATE"] = (t_recv.size - 1) / span_r if span_r > 0 else None
    lat = np.array([received[s] - sent[s] for s in got], dtype=np.float64) * 1e3
    if lat.size:
        out.update(
            FIRST_SENT_RECEIVED_LATENCY=float(lat[0]),
            LAST_SENT_RECEIVED_LATENCY=float(lat[-1]),
            MEAN_LATENCY=float(lat.mean()),
            P50_LATENCY=float(np.percentile(lat, 50)),
            P95_LATENCY=float(np.percentile(lat, 95)),
            MAX_LATENCY=float(lat.max()),
        )
    else:
        for k in (
            "FIRST_SENT_RECEIVED_LATENCY",
            "LAST_SENT_RECEIVED_LATENCY",
            "MEAN_LATENCY",
            "P50_LATENCY",
            "P95_LATENCY",
            "MAX_LATENCY",
        ):
            out[k] = None
    if t_recv.size >= 3:
        jitter = np.abs(np.diff(np.diff(t_recv)))
        mx, mn, mean, std = _stats_ms(jitter)
    else:
        mx = mn = mean = std = None
    out.update(MAX_JITTER=mx, MIN_JITTER=mn, MEAN_JITTER=mean, STD_DEV_JITTER=std)
    return out


def _read_proc(proc) -> tuple[float, int]:
    """(CPU seconds user+system, current RSS bytes) of a ``psutil.Process``."""
    with proc.oneshot():
        t = proc.cpu_times()
        return t.user + t.system, proc.memory_info().rss


def _gone() -> tuple[type[BaseException], ...]:
    import psutil

    return (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError)


@dataclass
class ProcessMonitor:
    """CPU utilisation and memory of one process, read with psutil.

    Use as a context manager around the measured interval::

        with ProcessMonitor(node.proc.pid) as mon:
            run()
        mon.result()  # {"cpu_percent": ..., "peak_rss_mb": ..., ...}

    ``cpu_percent`` is CPU time / wall time x 100 over the interval, so a process using two
    cores fully reads 200 %. ``peak_rss_mb`` is the largest resident set size seen by the
    sampling thread (every ``interval_s``) during the interval: a spike shorter than the
    sampling period can be missed.

    Args:
        pid: process id.
        interval_s: sampling period of the RSS thread.
    """

    pid: int
    interval_s: float = 0.05
    _cpu0: float = 0.0
    _t0: float = 0.0
    _cpu1: float = 0.0
    _t1: float = 0.0
    _max_rss: int = 0
    _proc: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ProcessMonitor:
        import psutil

        self._proc = psutil.Process(self.pid)
        self._cpu0, rss = _read_proc(self._proc)
        self._max_rss = rss
        self._t0 = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                _, rss = _read_proc(self._proc)
            except _gone():
                return
            self._max_rss = max(self._max_rss, rss)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._t1 = time.monotonic()
        try:
            self._cpu1, rss = _read_proc(self._proc)
            self._max_rss = max(self._max_rss, rss)
        except _gone():
            self._cpu1 = self._cpu0

    def result(self) -> dict:
        """``cpu_percent``, ``cpu_seconds``, ``wall_seconds``, ``peak_rss_mb`` (sampled),
        ``cpu_count``, ``source``."""
        wall = self._t1 - self._t0
        cpu = self._cpu1 - self._cpu0
        return {
            "cpu_percent": 100.0 * cpu / wall if wall > 0 else None,
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "peak_rss_mb": self._max_rss / 2**20,
            "cpu_count": os.cpu_count(),
            "source": f"psutil (user+system CPU time, RSS sampled every {self.interval_s:g} s)",
        }


@dataclass
class PeakSearchResult:
    """Outcome of :func:`find_peak_rate`.

    Attributes:
        peak_rate_hz: highest tried rate whose missed fraction was <= the limit (None when even
            the lowest failed).
        trials: ``[(rate_hz, missed_fraction, result of the trial), ...]`` in the order run.
    """

    peak_rate_hz: float | None
    trials: list[tuple[float, float, dict]]


def find_peak_rate(
    trial: Callable[[float], dict],
    min_rate_hz: float = 1.0,
    max_rate_hz: float = 120.0,
    max_missed: float = 0.05,
    rel_tolerance: float = 0.1,
    max_trials: int = 12,
) -> PeakSearchResult:
    """Highest publish rate at which at most ``max_missed`` of the frames are missed.

    Galloping then bisection (as ros2_benchmark's peak-throughput mode does): starting at
    ``min_rate_hz`` the rate doubles while trials pass (capped at ``max_rate_hz``); then the
    interval between the last pass and the first failure is bisected (geometric mean) until
    ``high / low <= 1 + rel_tolerance`` or ``max_trials`` trials have run. Assumes the missed
    fraction grows with the rate (true for a node that drops stale frames).

    Args:
        trial: runs one bounded trial at a rate (Hz) and returns a dict with
            ``MISSED_FRAME_FRACTION`` (e.g. :func:`performance_fields`'s).
        min_rate_hz, max_rate_hz: search range (0 < min <= max).
        max_missed: accepted missed fraction in [0, 1).
        rel_tolerance: stop when the bracket is this tight (relative).
        max_trials: hard bound on trials (>= 1).

    Returns:
        :class:`PeakSearchResult`.

    Raises:
        ValueError: invalid range or limits; a trial result without MISSED_FRAME_FRACTION.
    """
    if not (0 < min_rate_hz <= max_rate_hz) or not math.isfinite(max_rate_hz):
        raise ValueError(f"need 0 < min_rate_hz <= max_rate_hz, got {min_rate_hz}, {max_rate_hz}")
    if not 0 <= max_missed < 1:
        raise ValueError(f"max_missed must be in [0, 1), got {max_missed}")
    if rel_tolerance <= 0 or max_trials < 1:
        raise ValueError("rel_tolerance must be > 0 and max_trials >= 1")
    trials: list[tuple[float, float, dict]] = []

    def run(rate: float) -> bool:
        res = trial(rate)
        frac = res.get("MISSED_FRAME_FRACTION")
        if frac is None:
            raise ValueError(f"trial at {rate:g} Hz returned no MISSED_FRAME_FRACTION")
        trials.append((rate, float(frac), res))
        return frac <= max_missed

    low: float | None = None
    high: float | None = None
    rate = float(min_rate_hz)
    while len(trials) < max_trials:
        if run(rate):
            low = rate
            if rate >= max_rate_hz:
                break
            rate = min(2.0 * rate, float(max_rate_hz))
        else:
            high = rate
            break
    if low is None:
        return PeakSearchResult(None, trials)
    while high is not None and high / low > 1 + rel_tolerance and len(trials) < max_trials:
        mid = math.sqrt(low * high)
        if run(mid):
            low = mid
        else:
            high = mid
    return PeakSearchResult(low, trials)
