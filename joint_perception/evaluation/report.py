"""HTML + Markdown report of a replay: performance, accuracy, figures (matplotlib, Agg).

:func:`write_report` writes ``DIR/report.html`` and ``DIR/report.md`` with their PNG figures
next to them in ``DIR/report_files/`` (both documents link the same files, so the report can be
copied as one folder):

* ``latency.png``: end-to-end latency over the run (missed frames marked) and its histogram
  with p50/p95;
* ``stages.png``: per-stage node time (p50 ms);
* ``iou.png``: per-class IoU bars (classes present in GT or prediction);
* ``depth_by_range.png``: abs rel and RMSE per GT-distance bin;
* ``samples.png``: sample frames side by side — RGB, GT depth, predicted depth, predicted
  labels, predicted normals and the abs-rel error map;
* ``pointcloud.png``: a 3-D scatter of a decimated point cloud (camera optical frame, viewed
  from behind and above the camera).

Figures use :class:`matplotlib.figure.Figure` directly (no pyplot global state) and are written
atomically. Sections whose data is missing are left out.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from joint_perception.accuracy import baseline_table
from joint_perception.colormap import colorize_depth, colorize_labels, label_palette, normals_to_rgb
from joint_perception.io_utils import atomic_directory, atomic_write_bytes, atomic_write_text

__all__ = [
    "ReportSample",
    "write_report",
    "figure_latency",
    "figure_stages",
    "figure_iou",
    "figure_depth_by_range",
    "figure_samples",
    "figure_pointcloud",
]

FILES_DIR = "report_files"


@dataclass
class ReportSample:
    """One frame shown side by side.

    Attributes:
        title: caption (e.g. the header stamp).
        rgb: (H, W, 3) uint8 input.
        depth: (h, w) float32 predicted metres (NaN invalid), or None.
        gt_depth: (H, W) float32 GT metres (NaN invalid), or None.
        labels: (h, w) integer predicted labels, or None.
        normals: (h, w, 3) float32 predicted normals, or None.
        error: (H, W) float32 abs-rel error map (NaN invalid), or None.
        K: (3, 3) intrinsics of ``depth`` (for the point cloud), or None.
    """

    title: str
    rgb: np.ndarray
    depth: np.ndarray | None = None
    gt_depth: np.ndarray | None = None
    labels: np.ndarray | None = None
    normals: np.ndarray | None = None
    error: np.ndarray | None = None
    K: np.ndarray | None = None


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return atomic_write_bytes(path, buf.getvalue())


def figure_latency(
    path: Path, send_times_s: Sequence[float], latencies_ms: Sequence[float | None], title: str = ""
) -> Path:
    """Latency over time and its histogram.

    Args:
        path: PNG to write.
        send_times_s: send time of each frame, seconds since the first send.
        latencies_ms: end-to-end latency per frame in ms, None for a missed frame.

    Returns:
        ``path``.
    """
    t = np.asarray(send_times_s, dtype=np.float64)
    lat = np.array([np.nan if v is None else v for v in latencies_ms], dtype=np.float64)
    ok = np.isfinite(lat)
    fig = _figure(10, 3.4)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[2, 1])
    ax1.plot(t[ok], lat[ok], ".-", lw=0.8, ms=4, label="received")
    if (~ok).any():
        floor = np.nanmin(lat) if ok.any() else 0.0
        ax1.plot(
            t[~ok],
            np.full((~ok).sum(), floor),
            "x",
            color="tab:red",
            label=f"missed ({(~ok).sum()})",
        )
    ax1.set_xlabel("send time (s)")
    ax1.set_ylabel("latency (ms)")
    ax1.set_title(title or "end-to-end latency (send -> first output)")
    ax1.grid(alpha=0.3)
    ax1.legend(loc="upper right", fontsize=8)
    if ok.any():
        ax2.hist(lat[ok], bins=min(30, max(5, ok.sum() // 3)), color="tab:blue", alpha=0.8)
        for q, style in ((50, "--"), (95, ":")):
            v = np.percentile(lat[ok], q)
            ax2.axvline(v, color="k", ls=style, label=f"p{q} {v:.0f} ms")
        ax2.legend(fontsize=8)
    ax2.set_xlabel("latency (ms)")
    ax2.set_ylabel("frames")
    ax2.set_title("histogram")
    return _save(fig, path)


STAGE_ORDER = (
    "decode",
    "decode_jpeg",
    "preprocess",
    "inference",
    "postprocess",
    "pointcloud",
    "colorize",
    "messages",
    "publish",
)
"""Pipeline order of the stage names used by the node and ``benchmark``."""


def figure_stages(path: Path, stages_ms: Mapping[str, float], title: str = "") -> Path:
    """Horizontal bars of per-stage times (ms), in pipeline order (:data:`STAGE_ORDER`, unknown
    names last), with values printed."""
    names = sorted(
        stages_ms, key=lambda k: (STAGE_ORDER.index(k) if k in STAGE_ORDER else len(STAGE_ORDER), k)
    )
    vals = [float(stages_ms[k]) for k in names]
    fig = _figure(7, 0.45 * len(names) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.barh(y, vals, color="tab:orange")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    for yi, v in zip(y, vals):
        ax.text(v, yi, f" {v:.1f}", va="center", fontsize=8)
    ax.set_xlabel("time per frame (ms, p50)")
    ax.set_title(title or f"per-stage time (total {sum(vals):.1f} ms)")
    ax.set_xlim(0, max(vals + [1.0]) * 1.18)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def figure_iou(
    path: Path, iou_per_class: Mapping[str, float | None], miou: float | None = None
) -> Path:
    """Per-class IoU bars, highest first; classes with no GT or prediction are left out."""
    items = sorted(
        ((k, v) for k, v in iou_per_class.items() if v is not None), key=lambda kv: -kv[1]
    )
    fig = _figure(max(6, 0.28 * len(items) + 1.5), 3.6)
    ax = fig.subplots()
    x = np.arange(len(items))
    ax.bar(x, [v for _, v in items], color="tab:green")
    ax.set_xticks(x, [k for k, _ in items], rotation=70, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    if miou is not None:
        ax.axhline(miou, color="k", ls="--", lw=1, label=f"mIoU {miou:.3f}")
        ax.legend(fontsize=8)
    ax.set_title(f"per-class IoU ({len(items)} classes present)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def figure_depth_by_range(path: Path, by_range: Mapping[str, Mapping[str, float | None]]) -> Path:
    """abs rel (left axis) and RMSE (right axis) per GT-distance bin, pixel counts on top."""
    names = list(by_range)
    absrel = [by_range[k].get("abs_rel") for k in names]
    rmse = [by_range[k].get("rmse") for k in names]
    fig = _figure(6, 3.4)
    ax = fig.subplots()
    x = np.arange(len(names))
    ax.bar(x - 0.2, [v or 0 for v in absrel], 0.4, color="tab:blue", label="abs rel")
    ax.set_ylabel("abs rel", color="tab:blue")
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, [v or 0 for v in rmse], 0.4, color="tab:red", label="RMSE (m)")
    ax2.set_ylabel("RMSE (m)", color="tab:red")
    ax.set_xticks(x, [f"{n} m\n{by_range[n].get('n_pixels', 0):,} px" for n in names])
    ax.set_title("depth error by GT distance")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _imshow(ax, img, title, max_width: int = 320):
    if img.shape[1] > max_width:  # the panels are ~230 px wide: keep the PNG small
        import cv2

        h = round(img.shape[0] * max_width / img.shape[1])
        img = cv2.resize(img, (max_width, h), interpolation=cv2.INTER_NEAREST)
    ax.imshow(img, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def figure_samples(
    path: Path,
    samples: Sequence[ReportSample],
    min_depth: float = 0.0,
    max_depth: float = 10.0,
    num_classes: int = 40,
    max_error: float = 0.5,
) -> Path:
    """Sample frames side by side: RGB, GT depth, depth, labels, normals, abs-rel error.

    Depth panels share a turbo scale from ``min_depth`` to the 99th percentile of the shown
    depths (at most ``max_depth``); the error map is clipped at ``max_error`` (abs rel).
    Black = invalid / void.
    """
    cols = [
        ("RGB", "rgb"),
        ("GT depth", "gt_depth"),
        ("depth", "depth"),
        ("labels", "labels"),
        ("normals", "normals"),
        ("abs rel error", "error"),
    ]
    cols = [c for c in cols if any(getattr(s, c[1]) is not None for s in samples)]
    depths = [d[np.isfinite(d)] for s in samples for d in (s.depth, s.gt_depth) if d is not None]
    finite = np.concatenate(depths) if depths else np.zeros(0)
    hi = float(min(max_depth, np.percentile(finite, 99))) if finite.size else max_depth
    hi = max(hi, min_depth + 0.5)
    pal = label_palette(num_classes)
    fig = _figure(2.3 * len(cols), 1.9 * len(samples) + 0.5)
    axes = np.atleast_2d(fig.subplots(len(samples), len(cols), squeeze=False))
    import matplotlib

    for r, s in enumerate(samples):
        for c, (name, attr) in enumerate(cols):
            ax = axes[r, c]
            v = getattr(s, attr)
            if v is None:
                ax.axis("off")
                continue
            if attr in ("depth", "gt_depth"):
                img = colorize_depth(v, min_depth, hi)
            elif attr == "labels":
                img = colorize_labels(np.asarray(v), pal) if int(np.max(v)) < len(pal) else v
            elif attr == "normals":
                img = normals_to_rgb(v)
            elif attr == "error":
                e = np.clip(np.nan_to_num(v, nan=-1.0) / max_error, -1, 1)
                img = (matplotlib.colormaps["magma"](np.where(e < 0, 0, e))[..., :3] * 255).astype(
                    np.uint8
                )
                img[e < 0] = 0
            else:
                img = v
            _imshow(ax, img, f"{name}" + (f"\n{s.title}" if c == 0 else ""))
    fig.suptitle(
        f"depth scale {min_depth:g}-{hi:.1f} m (turbo, blue near); error 0-{max_error:g}"
        " abs rel (magma); black = invalid",
        fontsize=9,
    )
    return _save(fig, path)


def figure_pointcloud(
    path: Path,
    depth: np.ndarray,
    K: np.ndarray,
    rgb: np.ndarray | None = None,
    max_points: int = 12000,
    title: str = "",
) -> Path:
    """3-D scatter of a decimated organised cloud from ``depth`` and ``K``.

    Points are back-projected in the camera optical frame (x right, y down, z forward) and
    drawn with z as the horizontal depth axis and -y up, coloured by ``rgb`` when given
    (resized nearest to the depth size) else by depth.
    """
    import cv2

    from joint_perception.geometry import backproject

    P = backproject(np.asarray(depth, dtype=np.float32), K)
    h, w = P.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / max_points))))
    pts = P[::step, ::step].reshape(-1, 3)
    if rgb is not None:
        rgb = (
            cv2.resize(rgb, (w, h), interpolation=cv2.INTER_NEAREST)
            if rgb.shape[:2] != (h, w)
            else rgb
        )
        col = rgb[::step, ::step].reshape(-1, 3) / 255.0
    else:
        col = None
    ok = np.isfinite(pts).all(axis=1)
    pts = pts[ok]
    fig = _figure(6, 4.6)
    ax = fig.add_subplot(projection="3d")
    if col is not None:
        ax.scatter(pts[:, 0], pts[:, 2], -pts[:, 1], c=col[ok], s=0.8, depthshade=False)
    else:
        ax.scatter(pts[:, 0], pts[:, 2], -pts[:, 1], c=pts[:, 2], cmap="turbo", s=1.5)
    ax.scatter([0], [0], [0], c="k", marker="^", s=40)  # the camera
    ax.set_xlabel("x (m, right)")
    ax.set_ylabel("z (m, forward)")
    ax.set_zlabel("-y (m, up)")
    from matplotlib.ticker import MaxNLocator

    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(4))
    ax.view_init(elev=18, azim=-68)
    if pts.size:
        ax.set_box_aspect(np.ptp(np.vstack([pts[:, [0, 2, 1]], [[0, 0, 0]]]), axis=0) + 1e-3)
    ax.set_title(title or f"point cloud ({ok.sum():,} of {h * w:,} points shown)", fontsize=9)
    return _save(fig, path)


# ----------------------------------------------------------------------------- documents


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _tables(summary: Mapping, accuracy: Mapping | None) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of every table in the report."""
    tables = []
    perf = summary.get("performance") or {}
    if perf:
        tables.append(
            (
                "Performance (ros2_benchmark fields)",
                ["field", "value"],
                [[k, _fmt(v)] for k, v in perf.items()],
            )
        )
    setup = {
        k: summary.get(k)
        for k in (
            "bag",
            "bag_sha256",
            "rate_hz",
            "device",
            "backend",
            "model",
            "input_resolution",
            "network_resolution",
        )
        if summary.get(k) is not None
    }
    if setup:
        tables.append(("Set-up", ["item", "value"], [[k, _fmt(v)] for k, v in setup.items()]))
    agg = (accuracy or {}).get("aggregate") or {}
    versus = baseline_table(agg)
    if versus:
        tables.append(("Model vs trivial baselines (constant depth, layout band)", *versus))
    if agg.get("depth"):
        d = agg["depth"]
        tables.append(
            (
                "Depth (all valid GT pixels)",
                ["abs rel", "RMSE (m)", "delta1", "delta2", "delta3", "coverage"],
                [
                    [
                        _fmt(d.get(k))
                        for k in ("abs_rel", "rmse", "delta1", "delta2", "delta3", "coverage")
                    ]
                ],
            )
        )
    if agg.get("depth_by_range"):
        tables.append(
            (
                "Depth by GT distance",
                ["range (m)", "abs rel", "RMSE (m)", "delta1", "pixels"],
                [
                    [
                        k,
                        _fmt(v.get("abs_rel")),
                        _fmt(v.get("rmse")),
                        _fmt(v.get("delta1")),
                        _fmt(v.get("n_pixels")),
                    ]
                    for k, v in agg["depth_by_range"].items()
                ],
            )
        )
    if agg.get("segmentation"):
        s = agg["segmentation"]
        tables.append(
            (
                "Segmentation",
                ["mIoU", "pixel acc", "mean acc", "fwIoU"],
                [[_fmt(s.get(k)) for k in ("miou", "pixel_acc", "mean_acc", "fwiou")]],
            )
        )
    if agg.get("normals"):
        n = agg["normals"]
        tables.append(
            (
                "Normals (vs normals from GT depth)",
                ["mean (deg)", "median (deg)", "< 11.25", "< 22.5", "< 30"],
                [[_fmt(n.get(k)) for k in ("mean", "median", "pct_11_25", "pct_22_5", "pct_30")]],
            )
        )
    return tables


def _markdown(title: str, tables, figures: Mapping[str, str], notes: Sequence[str]) -> str:
    out = [f"# {title}", ""]
    out += [f"- {n}" for n in notes]
    for name, head, rows in tables:
        out += ["", f"## {name}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    for caption, rel in figures.items():
        out += ["", f"## {caption}", "", f"![{caption}]({rel})"]
    return "\n".join(out) + "\n"


def _html(title: str, tables, figures: Mapping[str, str], notes: Sequence[str]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;"
        "padding:2px 8px;text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>",
    ]
    for name, head, rows in tables:
        parts.append(
            f"<h2>{e(name)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
        )
        parts += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    for caption, rel in figures.items():
        parts.append(f"<h2>{e(caption)}</h2><img src='{e(rel)}' alt='{e(caption)}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    out_dir: str | os.PathLike,
    summary: Mapping,
    accuracy: Mapping | None = None,
    send_times_s: Sequence[float] | None = None,
    latencies_ms: Sequence[float | None] | None = None,
    stages_ms: Mapping[str, float] | None = None,
    samples: Sequence[ReportSample] = (),
    title: str = "Replay report",
    notes: Sequence[str] = (),
    num_classes: int = 40,
    max_depth: float = 10.0,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ PNGs in ``report_files/``) to ``out_dir``.

    Args:
        out_dir: directory (created).
        summary: replay summary; ``performance`` (ros2_benchmark fields) and the set-up keys
            ``bag``, ``bag_sha256``, ``rate_hz``, ``device``, ``backend``, ``model``,
            ``input_resolution``, ``network_resolution`` are tabulated when present.
        accuracy: :meth:`joint_perception.accuracy.AccuracyEvaluator.result`.
        send_times_s, latencies_ms: per sent frame (s since the first send; ms or None when
            missed) for the latency figure.
        stages_ms: per-stage p50 times for the stage figure.
        samples: frames for the side-by-side figure (the first with depth and K also gives
            the point cloud view).
        title, notes: heading and bullet notes (e.g. "model untrained").
        num_classes, max_depth: label palette size and depth colour range.

    Returns:
        (html path, markdown path).
    """
    out = Path(out_dir)
    figures: dict[str, str] = {}
    # the figures are drawn into a temporary sibling that replaces report_files/ as a whole:
    # an interrupted report leaves the previous figures, and none of an earlier run lingers
    with atomic_directory(out / FILES_DIR) as files:

        def add(caption: str, name: str, fn, *args, **kw) -> None:
            fn(files / name, *args, **kw)
            figures[caption] = f"{FILES_DIR}/{name}"

        if send_times_s is not None and latencies_ms is not None and len(send_times_s):
            add("Latency", "latency.png", figure_latency, send_times_s, latencies_ms)
        if stages_ms:
            add("Per-stage time", "stages.png", figure_stages, stages_ms)
        agg = (accuracy or {}).get("aggregate") or {}
        if agg.get("segmentation"):
            seg = agg["segmentation"]
            add("Per-class IoU", "iou.png", figure_iou, seg["iou_per_class"], seg.get("miou"))
        if agg.get("depth_by_range"):
            add(
                "Depth error by distance",
                "depth_by_range.png",
                figure_depth_by_range,
                agg["depth_by_range"],
            )
        if samples:
            add(
                "Sample frames", "samples.png", figure_samples, samples, 0.0, max_depth, num_classes
            )
            cloud = next((s for s in samples if s.depth is not None and s.K is not None), None)
            if cloud is not None:
                add(
                    "Point cloud",
                    "pointcloud.png",
                    figure_pointcloud,
                    cloud.depth,
                    cloud.K,
                    cloud.rgb,
                    title=f"point cloud of {cloud.title} (decimated)",
                )
    if not figures:  # nothing to show: no empty report_files/ (an earlier one went with it)
        (out / FILES_DIR).rmdir()
    tables = _tables(summary, accuracy)
    md = atomic_write_text(out / "report.md", _markdown(title, tables, figures, notes))
    page = atomic_write_text(out / "report.html", _html(title, tables, figures, notes))
    return page, md
