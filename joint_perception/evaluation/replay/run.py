"""One replay run end to end: inputs, the measured session (fixed rate or peak search), the
output bag, summary, accuracy, report and the summary files.

The output bag is written to ``DIR/.output.partial`` while recording and moved to
``DIR/output`` when the session has ended; ``summary.json``/``summary.md`` and the report are
written atomically.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from joint_perception.evaluation.rates import loop_schedule
from joint_perception.evaluation.replay.bag_input import InputFrame, load_input_frames
from joint_perception.evaluation.replay.markdown import write_summary
from joint_perception.evaluation.replay.node_process import NODE_NAME
from joint_perception.evaluation.replay.options import ReplayOptions
from joint_perception.evaluation.replay.peak import peak_search
from joint_perception.evaluation.replay.run_report import write_run_report
from joint_perception.evaluation.replay.scoring import depth_metrics, score_outputs
from joint_perception.evaluation.replay.session import ReplaySession
from joint_perception.evaluation.replay.summary import model_metadata, summarise
from joint_perception.evaluation.replay.topics import namespaced

DEFAULT_NUM_CLASSES = 40  # when the node's model metadata cannot be read


@dataclass
class _Measured:
    """What the session measured: the summary and the sends it describes."""

    summary: dict
    sent: dict[int, float]
    schedule: list[tuple[int, int]]
    peak: dict | None
    session: ReplaySession


def _load_inputs(opts: ReplayOptions) -> tuple[list[InputFrame], str]:
    """The bag's frames and image type; checks the labelled folder exists."""
    frames, image_type = load_input_frames(opts.bag, opts.topics, opts.compressed)
    if not frames:
        raise ValueError(f"{opts.bag}: no image messages to replay")
    if opts.labels_dir is not None and not Path(opts.labels_dir).is_dir():
        raise FileNotFoundError(f"labelled folder not found: {opts.labels_dir}")
    return frames, image_type


def _measure(
    opts: ReplayOptions, frames: list[InputFrame], image_type: str, bag_dir: Path
) -> _Measured:
    """Run the session (recording to ``bag_dir``) and summarise it."""
    n = opts.frames if opts.frames is not None else len(frames)
    schedule = loop_schedule([f.stamp_ns for f in frames], n)
    peak = None
    with ReplaySession(opts, image_type, bag_dir) as session:
        if opts.peak:
            peak, sent, process, schedule, elapsed = peak_search(session, frames, opts)
        else:
            sent, process, elapsed = session.run(frames, schedule, opts.rate_hz)
        session.wait_for_diagnostics()
        node_fqn = namespaced(opts.namespace, NODE_NAME)
        summary = summarise(
            frames,
            sent,
            session.recorder,
            node_fqn,
            elapsed,
            image_type,
            process,
            session.all_sent,
        )
    return _Measured(summary, sent, schedule, peak, session)


def _move_bag(partial: Path, out: Path) -> Path:
    """Replace ``out/output`` with the finished bag ``partial``; returns its new path."""
    final = out / "output"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return final


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
    from joint_perception.allocator import keep_freed_memory
    from joint_perception.data.rosbag_io import bag_sha256

    keep_freed_memory()  # the recorder receives ~12 MB per 640x480 frame: no page faults

    frames, image_type = _load_inputs(opts)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".output.partial"
    shutil.rmtree(partial, ignore_errors=True)
    m = _measure(opts, frames, image_type, partial)
    final = _move_bag(partial, out)
    summary = m.summary
    summary.update(
        bag=str(opts.bag),
        bag_sha256=bag_sha256(opts.bag),
        output_bag=str(final),
        node_exit_code=m.session.exit_code,
        rate_hz=opts.rate_hz,
        compressed=opts.compressed,
        peak=m.peak,
        load_average_1_5_15_min=os.getloadavg(),
    )
    meta = model_metadata(summary["node"])
    num_classes = meta.num_classes if meta and meta.num_classes else DEFAULT_NUM_CLASSES
    class_names = meta.class_names if meta else None
    accuracy, samples = score_outputs(
        opts, frames, m.schedule, m.sent, final, num_classes, class_names
    )
    summary["accuracy"] = accuracy
    summary["depth_metrics"] = depth_metrics(accuracy)
    if opts.report:
        arrivals = m.session.recorder.arrivals(summary["primary_output"] or "")
        html = write_run_report(
            out, opts, summary, accuracy, m.sent, arrivals, samples, meta, num_classes
        )
        summary["report"] = str(html)
    write_summary(out, summary)
    return summary
