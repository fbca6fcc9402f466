"""Peak-throughput search over a live session: bounded trials at galloping/bisected rates.

Each trial sends ``peak_frames`` frames with fresh stamps through the same node
(:meth:`joint_perception.evaluation.replay.session.ReplaySession.run`) and is scored by its
missed-frame fraction; :func:`joint_perception.evaluation.rates.find_peak_rate` picks the
rates. The summary then describes the best passing trial (else the first one).
"""

from __future__ import annotations

import time

from joint_perception.evaluation.rates import (
    PeakSearchResult,
    find_peak_rate,
    loop_schedule,
    performance_fields,
)
from joint_perception.evaluation.replay.bag_input import InputFrame
from joint_perception.evaluation.replay.options import ReplayOptions
from joint_perception.evaluation.replay.session import ReplaySession

MAX_TRIALS = 10
SCHEDULED_TRIALS = 16  # frames for this many trials are stamped up front (> MAX_TRIALS)
PAUSE_BETWEEN_TRIALS_S = 0.3  # the node finishes its last frame before the next trial


class _Trials:
    """Runs trials on ``session``, each on the next ``frames_per_trial`` scheduled frames, and
    keeps ``{rate: (sent, process, schedule, elapsed)}`` of each."""

    def __init__(self, session: ReplaySession, frames: list[InputFrame], frames_per_trial: int):
        self.session = session
        self.frames = frames
        self.per_trial = frames_per_trial
        stamps = [f.stamp_ns for f in frames]
        self.schedule = loop_schedule(stamps, frames_per_trial * SCHEDULED_TRIALS)
        self.cursor = 0
        self.runs: dict[float, tuple] = {}

    def __call__(self, rate: float) -> dict:
        start = self.cursor
        if start + self.per_trial > len(self.schedule):
            raise RuntimeError("peak search ran out of scheduled frames")
        sched = self.schedule[start : start + self.per_trial]
        self.cursor += self.per_trial
        session = self.session
        sent, proc, elapsed = session.run(self.frames, sched, rate)
        got = session.recorder.arrivals(session.primary)
        perf = performance_fields(sent, {s: t for s, t in got.items() if s in sent})
        self.runs[rate] = (sent, proc, sched, elapsed)
        time.sleep(PAUSE_BETWEEN_TRIALS_S)
        return perf


def _peak_record(res: PeakSearchResult, opts: ReplayOptions) -> dict:
    """The summary's ``peak``: the peak rate, the limit and every trial."""
    return {
        "peak_rate_hz": res.peak_rate_hz,
        "max_missed": opts.max_missed,
        "frames_per_trial": opts.peak_frames,
        "trials": [
            {
                "rate_hz": r,
                "missed_fraction": f,
                "MEAN_FRAME_RATE": p.get("MEAN_FRAME_RATE"),
                "MEAN_LATENCY": p.get("MEAN_LATENCY"),
                "P95_LATENCY": p.get("P95_LATENCY"),
            }
            for r, f, p in res.trials
        ],
    }


def peak_search(
    session: ReplaySession, frames: list[InputFrame], opts: ReplayOptions
) -> tuple[dict, dict[int, float], dict, list[tuple[int, int]], float]:
    """Peak-throughput search; each trial sends ``peak_frames`` fresh stamps. Returns
    (peak record, sent/process/schedule/elapsed of the best passing trial, else the first)."""
    trials = _Trials(session, frames, opts.peak_frames)
    res = find_peak_rate(
        trials,
        opts.peak_min_rate_hz,
        opts.peak_max_rate_hz,
        opts.max_missed,
        max_trials=MAX_TRIALS,
    )
    best = res.peak_rate_hz if res.peak_rate_hz is not None else res.trials[0][0]
    sent, proc, sched, elapsed = trials.runs[best]
    return _peak_record(res, opts), sent, proc, sched, elapsed
