"""The HTML/Markdown report of a finished run (:mod:`joint_perception.evaluation.report`):
the per-frame latency series in send order, stage times, samples and notes on the set-up."""

from __future__ import annotations

from pathlib import Path

from joint_perception.evaluation.replay.options import ReplayOptions


def _notes(opts: ReplayOptions, summary: dict, meta) -> list[str]:
    """What was sent, on what set-up, and whether the model looks untrained."""
    rate = f"at {opts.rate_hz:g} Hz" if opts.rate_hz else "at the recorded rate"
    peak = " (peak-throughput search: best passing trial)" if opts.peak else ""
    notes = [
        f"{summary['frames_in']} frames sent {rate}{peak}",
        f"model {summary.get('model')}; backend {summary.get('backend')} on "
        f"{summary.get('device')}",
    ]
    if meta is not None and not meta.metrics:
        notes.append(
            "the model's metadata records no measured metrics: it may be "
            "untrained or an early version"
        )
    return notes


def write_run_report(
    out: Path,
    opts: ReplayOptions,
    summary: dict,
    accuracy: dict | None,
    sent: dict[int, float],
    arrivals: dict[int, float],
    samples: list,
    meta,
    num_classes: int,
) -> Path:
    """Write ``report.html`` + ``report.md`` into ``out``; returns the HTML path.

    Args:
        sent: ``{stamp: send time}`` of the summarised frames.
        arrivals: ``{stamp: arrival time}`` of the primary output.
        samples: :class:`joint_perception.evaluation.report.ReportSample` list.
        meta: the node's model metadata, or None.
    """
    from joint_perception.evaluation.report import write_report

    t_first = min(sent.values()) if sent else 0.0
    order = sorted(sent, key=sent.get)
    send_times = [sent[s] - t_first for s in order]
    latencies = [1e3 * (arrivals[s] - sent[s]) if s in arrivals else None for s in order]
    html_path, _ = write_report(
        out,
        summary,
        accuracy,
        send_times,
        latencies,
        summary["stages_p50_ms"],
        samples,
        title=f"Replay of {opts.bag}",
        notes=_notes(opts, summary, meta),
        num_classes=num_classes,
        max_depth=opts.max_depth,
    )
    return html_path
