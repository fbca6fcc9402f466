"""The summary as files: ``summary.json`` and a human-readable ``summary.md``.

:func:`summary_markdown` renders :func:`joint_perception.evaluation.replay.summarise`'s dict
(with the accuracy, peak search and set-up keys the run adds) as Markdown tables;
:func:`write_summary` writes both files atomically.
"""

from __future__ import annotations

from pathlib import Path

from joint_perception.io_utils import atomic_write_json, atomic_write_text


def fmt(v) -> str:
    """A table cell: ``-`` for None, floats with 3 decimals."""
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _table(head: str, rows: list[str]) -> list[str]:
    """A blank line, a header row with its separator, then ``rows``."""
    n = head.count("|") - 1
    return ["", head, "|" + "---|" * n] + rows


def _latency_lines(s: dict) -> list[str]:
    lines = [
        f"# Replay of `{s.get('bag', '?')}`",
        "",
        f"Frames in {s['frames_in']}, out {s['frames_out']}, dropped {s['frames_dropped']}"
        f" ({s['elapsed_s']:.1f} s).",
        "",
        "| latency (ms) | p50 | p95 | max |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("latency_ms", f"send -> {s['primary_output']}"),
        ("latency_all_outputs_ms", "send -> all outputs"),
    ):
        lat = s[key]
        lines.append(
            f"| {label} | {fmt(lat['p50_ms'])} | {fmt(lat['p95_ms'])} | {fmt(lat['max_ms'])} |"
        )
    return lines


def _measurement_lines(s: dict) -> list[str]:
    """ros2_benchmark fields, stage times, output topics and depth metrics."""
    lines = []
    if s.get("performance"):
        rows = [f"| {k} | {fmt(v)} |" for k, v in s["performance"].items()]
        lines += _table("| ros2_benchmark field | value |", rows)
    rows = [f"| {k} | {fmt(v)} |" for k, v in s["stages_p50_ms"].items()]
    lines += _table("| stage | p50 (ms) |", rows)
    rows = [
        f"| `{o['topic']}` | {o['count']} | {', '.join(o['frame_ids'])} | "
        f"{o['stamps_match_input']} |"
        for o in s["outputs"].values()
    ]
    lines += _table("| output topic | messages | frame_id | stamps = input |", rows)
    if s.get("depth_metrics"):
        rows = [f"| {k} | {fmt(v)} |" for k, v in s["depth_metrics"].items()]
        lines += _table("| depth metric | value |", rows)
    return lines


def versus_baselines_markdown(s: dict) -> list[str]:
    """Markdown lines of the model-vs-baselines table (empty without accuracy)."""
    from joint_perception.accuracy import baseline_table

    versus = baseline_table(((s.get("accuracy") or {}).get("aggregate")) or {})
    if not versus:
        return []
    head, rows = versus
    return [
        "",
        "Model vs trivial baselines (constant depth, layout band; no test ground truth):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ] + ["| " + " | ".join(r) + " |" for r in rows]


def _peak_lines(p: dict) -> list[str]:
    lines = [
        "",
        f"Peak throughput: {fmt(p['peak_rate_hz'])} Hz with at most "
        f"{100 * p['max_missed']:g} % missed frames.",
        "",
        "| trial rate (Hz) | missed fraction | MEAN_FRAME_RATE | mean latency (ms) |",
        "|---|---|---|---|",
    ]
    return lines + [
        f"| {fmt(t['rate_hz'])} | {fmt(t['missed_fraction'])} | "
        f"{fmt(t['MEAN_FRAME_RATE'])} | {fmt(t['MEAN_LATENCY'])} |"
        for t in p["trials"]
    ]


def _setup_lines(s: dict) -> list[str]:
    lines = []
    keys = ("device", "backend", "model", "input_resolution", "network_resolution", "bag_sha256")
    setup = [f"{k} = {s[k]}" for k in keys if s.get(k)]
    if setup:
        lines += ["", "Set-up: " + "; ".join(setup)]
    node = s.get("node", {})
    if node:
        lines += ["", "Node: " + "; ".join(f"{k} = {v}" for k, v in node.items())]
    return lines


def summary_markdown(s: dict) -> str:
    """Human-readable Markdown of :func:`joint_perception.evaluation.replay.summarise`'s dict."""
    lines = _latency_lines(s) + _measurement_lines(s) + versus_baselines_markdown(s)
    if s.get("peak"):
        lines += _peak_lines(s["peak"])
    lines += _setup_lines(s)
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, summary: dict) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` atomically; returns their paths."""
    return (
        atomic_write_json(out_dir / "summary.json", summary),
        atomic_write_text(out_dir / "summary.md", summary_markdown(summary)),
    )
