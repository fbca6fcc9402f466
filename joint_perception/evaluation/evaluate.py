"""``evaluate``: a model on a data set split -> ``metrics.json``, ``metrics.md`` and a figure.

Usage::

    evaluate --model models/realtime --dataset nyu_folder --root ../shared/data/nyuv2_test --out eval/
    evaluate --model runs/smoke/checkpoints/last.ckpt --dataset nyuv2_labeled --split test \\
             --arg mat_path=nyu_depth_v2_labeled.mat --arg splits_path=splits.mat \\
             --arg class_mapping=classMapping40.mat --out eval/ --eigen-crop nyu

Models: an exported directory / ``.onnx`` (run through ``runtime.factory.create_backend`` and
``runtime.processing.Pipeline``, exactly as the ROS node runs it) or a Lightning ``.ckpt`` /
``model.pt`` (the torch module behind the same ONNX contract, via ``DeployWrapper``, and the
same Pipeline). Every frame is predicted at its full resolution with its own K, and all metrics
come from :mod:`joint_perception.metrics`, accumulated pixel-wise over the whole split (NYUv2
convention, docs/contracts.md section 5): depth (GT cap ``--max-depth``, optional Eigen crop, NaN
predictions reported as coverage) with a per-distance breakdown, segmentation (confusion matrix,
void ignored) and normals where the data set has them.

Outputs in ``--out``: ``metrics.json``, ``metrics.md`` (Markdown tables) and ``figure.png``
(rows = frames; columns RGB | predicted depth | GT depth | predicted labels | GT labels |
predicted normals), all written atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from joint_perception.accuracy import AccuracyEvaluator, FrameReference, baseline_table
from joint_perception.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text
from joint_perception.metadata import ModelMetadata, load_metadata
from joint_perception.runtime.base import Backend, prediction_from_outputs
from joint_perception.runtime.threads import add_thread_arguments, thread_options

log = logging.getLogger("joint_perception.evaluate")

__all__ = [
    "main",
    "evaluate",
    "load_model",
    "CheckpointBackend",
    "render_figure",
    "write_figure",
    "markdown_table",
]

RANGE_EDGES = (0.0, 2.0, 4.0, 10.0)


class CheckpointBackend(Backend):
    """A :class:`Backend` over a torch module from a checkpoint (CPU, fp32), using the same
    ``DeployWrapper`` graph as the ONNX export so results compare with the exported model."""

    name = "torch-checkpoint"

    def __init__(self, model, metadata: ModelMetadata):
        import torch

        from joint_perception.models.deploy import DeployWrapper

        super().__init__(metadata)
        self._torch = torch
        self.wrapper = DeployWrapper(model.eval()).eval()
        self.reason = "checkpoint evaluated with PyTorch on CPU"

    def predict(self, batch: np.ndarray):
        self.check_batch(batch)
        with self._torch.no_grad():
            outs = self.wrapper(self._torch.from_numpy(batch))
        if not isinstance(outs, (tuple, list)):
            outs = [outs]
        return prediction_from_outputs(
            {n: o.numpy() for n, o in zip(self.wrapper.output_names, outs)}
        )


def _checkpoint_metadata(model, path: Path, input_size: Sequence[int] | None) -> ModelMetadata:
    """Metadata for a checkpoint: input size and canonical focal from the files around it
    (:func:`~joint_perception.models.serialization.checkpoint_context`), the size unless
    given."""
    from joint_perception.models.serialization import checkpoint_context
    from joint_perception.nyuv2_classes import default_class_names

    ctx = checkpoint_context(path)
    size = input_size or ctx.input_size or (240, 320)
    names = default_class_names(model.num_classes) if "segmentation" in model.tasks else []
    return ModelMetadata(
        architecture=model.arch,
        tasks=list(model.tasks),
        input_height=int(size[0]),
        input_width=int(size[1]),
        mean=list(model.mean),
        std=list(model.std),
        class_names=names,
        max_depth=float(model.max_depth),
        canonical_focal=ctx.canonical_focal,
    )


def load_model(
    path: str | Path,
    backend: str = "auto",
    input_size: Sequence[int] | None = None,
    **backend_options: Any,
):
    """Return a ``runtime.processing.Pipeline`` for an exported model or a checkpoint.

    ``backend_options`` (e.g. ``intra_op_threads``) go to
    :func:`joint_perception.runtime.factory.create_backend` for exported models.

    Raises:
        FileNotFoundError: nothing at ``path``. ValueError: unusable files (names them).
    """
    from joint_perception.runtime.processing import Pipeline

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model not found: {p}")
    if p.suffix in (".ckpt", ".pt"):
        from joint_perception.models.serialization import load_checkpoint_model

        model = load_checkpoint_model(p)
        return Pipeline(CheckpointBackend(model, _checkpoint_metadata(model, p, input_size)))
    from joint_perception.runtime.factory import create_backend

    return Pipeline(create_backend(p, backend=backend, **backend_options))


def _parse_args_kv(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--arg {item!r} must be key=value")
        k, v = item.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def evaluate(
    pipeline,
    dataset,
    max_depth: float = 10.0,
    eigen_crop: str | None = None,
    num_classes: int | None = None,
    figure_rows: int = 4,
    baselines: bool = True,
) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    """Run ``pipeline`` over ``dataset`` (sample dicts) and accumulate all metrics.

    The metrics come from :class:`joint_perception.accuracy.AccuracyEvaluator`, the
    same accumulator ``replay`` uses, with normals scored only where the data set has GT
    normals, and the trivial baselines (:mod:`joint_perception.baselines`) scored on the same
    frames.

    Args:
        pipeline: ``runtime.processing.Pipeline``.
        dataset: map-style data set of sample dicts (``data.registry``).
        max_depth: GT cap in metres (NYU 10, KITTI 80).
        eigen_crop: None, ``"nyu"`` or ``"kitti"``.
        num_classes: class count of the GT labels; a 40-class model on 13-class GT is mapped
            with ``MAP40_TO_13``.
        figure_rows: how many frames to keep for the figure.
        baselines: score the constant-depth and layout-band baselines too.

    Returns:
        (metrics dict, figure rows: dicts of rgb / depth / gt_depth / labels / gt_labels / normals).
        The metrics dict has ``depth``, ``depth_by_range``, ``segmentation`` (with
        ``iou_per_class`` by name), ``normals`` (each only when evaluated), ``baselines`` and
        ``margins`` (:func:`joint_perception.baselines.margins`).
    """
    meta = pipeline.metadata
    model_classes = meta.num_classes
    gt_classes = num_classes or model_classes
    remap = None
    if model_classes == 40 and gt_classes == 13:
        from joint_perception.nyuv2_classes import MAP40_TO_13

        remap = MAP40_TO_13
    elif model_classes and gt_classes != model_classes:
        raise ValueError(
            f"model has {model_classes} classes, ground truth {gt_classes}: no mapping known"
        )
    ev = AccuracyEvaluator(
        max(gt_classes, 1),
        _class_names(gt_classes, meta) if gt_classes else None,
        max_depth=max_depth,
        range_edges=RANGE_EDGES,
        eigen_crop=eigen_crop or False,
        baselines=baselines,
        derive_normals=False,
    )
    rows: list[dict[str, np.ndarray]] = []
    infer_ms: list[float] = []
    for i in range(len(dataset)):
        s = dataset[i]
        rgb, gt = s["rgb"], s["depth"]
        t0 = time.perf_counter()
        res = pipeline.run(rgb, s["K"], out_size=rgb.shape[:2])
        infer_ms.append((time.perf_counter() - t0) * 1e3)
        gt_nan = np.where(gt > 0, gt, np.nan).astype(np.float32)
        labels = None
        if res.labels is not None:
            labels = remap[res.labels] if remap is not None else res.labels
        ref = FrameReference(
            K=s["K"],
            rgb=rgb,
            depth=gt_nan if np.any(gt > 0) else None,
            labels=s["labels"] if s["has_labels"] and gt_classes else None,
            normals=s["normals"] if s["has_normals"] else None,
        )
        ev.add(s.get("name", str(i)), res.depth, labels if gt_classes else None, res.normals, ref)
        if len(rows) < figure_rows:
            rows.append(
                {
                    "name": s.get("name", str(i)),
                    "rgb": rgb,
                    "depth": res.depth,
                    "gt_depth": gt_nan,
                    "labels": labels,
                    "gt_labels": s["labels"] if s["has_labels"] else None,
                    "normals": res.normals,
                }
            )
    agg = ev.aggregate()
    metrics: dict[str, Any] = {
        "model": {
            "architecture": meta.architecture,
            "input_size": [meta.input_height, meta.input_width],
            "backend": pipeline.backend.describe(),
        },
        "n_frames": len(infer_ms),
        "settings": {"max_depth": max_depth, "eigen_crop": eigen_crop, "num_classes": gt_classes},
        "timing_ms": {"mean_per_frame": float(np.mean(infer_ms)) if infer_ms else None},
    }
    for key in ("depth", "depth_by_range", "segmentation", "normals", "baselines", "margins"):
        if agg.get(key):
            metrics[key] = agg[key]
    return metrics, rows


def _class_names(n: int, meta: ModelMetadata) -> list[str]:
    if n == meta.num_classes:
        return list(meta.class_names)
    from joint_perception.nyuv2_classes import default_class_names

    return default_class_names(n)


def _nan_to_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def markdown_table(metrics: dict[str, Any]) -> str:
    """Markdown report: depth, per-range depth, segmentation and normal tables."""

    def fmt(v):
        return (
            "n/a"
            if v is None or (isinstance(v, float) and not math.isfinite(v))
            else (f"{v:.4f}" if isinstance(v, float) else str(v))
        )

    m = metrics["model"]
    lines = [
        f"# Evaluation: {m['architecture']} ({m['input_size'][0]}x{m['input_size'][1]}, {m['backend']})",
        "",
        f"{metrics['n_frames']} frames; depth cap {metrics['settings']['max_depth']} m; "
        f"Eigen crop: {metrics['settings']['eigen_crop'] or 'no'}; metrics pixel-wise over the set.",
        "",
    ]
    if "depth" in metrics:
        keys = [
            "abs_rel",
            "sq_rel",
            "rmse",
            "rmse_log",
            "log10",
            "silog",
            "delta1",
            "delta2",
            "delta3",
            "coverage",
        ]
        lines += [
            "## Depth",
            "",
            "| range | " + " | ".join(keys) + " | pixels |",
            "|---" * (len(keys) + 2) + "|",
        ]
        rows = [("all", metrics["depth"])] + list(metrics.get("depth_by_range", {}).items())
        for name, d in rows:
            lines.append(
                f"| {name} | " + " | ".join(fmt(d[k]) for k in keys) + f" | {d['n_pixels']} |"
            )
        lines.append("")
    if "segmentation" in metrics:
        s = metrics["segmentation"]
        lines += [
            "## Segmentation",
            "",
            "| pixel acc | mean acc | mIoU | fwIoU | pixels |",
            "|---|---|---|---|---|",
            f"| {fmt(s['pixel_acc'])} | {fmt(s['mean_acc'])} | {fmt(s['miou'])} | {fmt(s['fwiou'])} | "
            f"{s['n_pixels']} |",
            "",
        ]
    versus = baseline_table(metrics)
    if versus:
        head, rows = versus
        lines += [
            "## Model vs trivial baselines",
            "",
            "Baselines use no test ground truth (`joint_perception.baselines`): depth = a constant "
            "2.666 m; labels = ceiling / wall / floor bands by image row.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    if "normals" in metrics:
        n = metrics["normals"]
        lines += [
            "## Surface normals (degrees)",
            "",
            "| mean | median | rmse | < 11.25 | < 22.5 | < 30 | pixels |",
            "|---|---|---|---|---|---|---|",
            f"| {fmt(n['mean'])} | {fmt(n['median'])} | {fmt(n['rmse'])} | {fmt(n['pct_11_25'])} | "
            f"{fmt(n['pct_22_5'])} | {fmt(n['pct_30'])} | {n['n_pixels']} |",
            "",
        ]
    return "\n".join(lines)


def write_figure(rows: list[dict], meta: ModelMetadata, path: str | Path, max_depth: float) -> Path:
    """:func:`render_figure` written atomically to ``path``; returns it."""
    return atomic_write_bytes(path, render_figure(rows, meta, max_depth))


def render_figure(rows: list[dict], meta: ModelMetadata, max_depth: float) -> bytes:
    """PNG grid (bytes): one row per frame, columns RGB | predicted depth | GT depth |
    predicted labels | GT labels | predicted normals (blank where absent).

    Raises:
        ValueError: no rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from joint_perception.colormap import (
        colorize_depth,
        colorize_labels,
        normals_to_rgb,
        palette_from_metadata,
    )

    if not rows:
        raise ValueError("no frames to draw")
    n_cls = max(
        meta.num_classes,
        max((int(r["gt_labels"].max()) for r in rows if r["gt_labels"] is not None), default=0),
    )
    palette = palette_from_metadata(meta.class_colors, n_cls) if meta.class_colors else None
    if palette is None or len(palette) < n_cls + 1:
        from joint_perception.colormap import label_palette

        palette = label_palette(n_cls)
    cols = [
        "RGB",
        "predicted depth",
        "GT depth",
        "predicted labels",
        "GT labels",
        "predicted normals",
    ]
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(3 * len(cols), 2.4 * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        h, w = row["rgb"].shape[:2]
        blank = np.full((h, w, 3), 255, np.uint8)
        imgs = [
            row["rgb"],
            colorize_depth(row["depth"], 0.0, max_depth) if row["depth"] is not None else blank,
            colorize_depth(row["gt_depth"], 0.0, max_depth),
            colorize_labels(row["labels"], palette) if row["labels"] is not None else blank,
            colorize_labels(row["gt_labels"], palette) if row["gt_labels"] is not None else blank,
            normals_to_rgb(row["normals"]) if row["normals"] is not None else blank,
        ]
        for c, img in enumerate(imgs):
            ax = axes[r, c]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=10)
        axes[r, 0].set_ylabel(str(row["name"]), fontsize=9)
    fig.suptitle(
        f"{meta.architecture}: depth 0-{max_depth:g} m (turbo), NYU-40 colours, normals (n+1)/2",
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evaluate", description="Evaluate a model on a data set split."
    )
    p.add_argument(
        "--model", required=True, help="exported model dir / .onnx, or a .ckpt / model.pt"
    )
    p.add_argument(
        "--dataset", required=True, help="data set name (data.registry), e.g. nyu_folder"
    )
    p.add_argument("--root", help="data set root (passed as root=...)")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--arg", action="append", default=[], help="extra data set option key=value (repeatable)"
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--backend", default="auto", help="auto|onnxruntime|torch|tensorrt (exported models)"
    )
    p.add_argument(
        "--max-depth", type=float, default=None, help="GT cap in metres (default: the model's)"
    )
    p.add_argument("--eigen-crop", choices=["nyu", "kitti"], default=None)
    p.add_argument(
        "--num-classes", type=int, default=None, help="GT class count (13 maps a 40-class model)"
    )
    p.add_argument(
        "--input-size", type=int, nargs=2, default=None, help="H W for checkpoints without config"
    )
    p.add_argument("--figure-rows", type=int, default=4)
    p.add_argument(
        "--record",
        metavar="NAME",
        help="also store the summary under metrics[NAME] in the model directory's metadata.json "
        "(exported model directories only; written atomically)",
    )
    add_thread_arguments(p)
    return p


def _record_target(model: str | os.PathLike) -> Path:
    """The ``metadata.json`` that ``--record`` updates: the exported model directory's.

    Raises:
        FileNotFoundError: ``model`` is not a directory with a ``metadata.json`` (a file is
            refused with the directory to give instead).
    """
    d = Path(model)
    if d.is_file():
        raise FileNotFoundError(
            f"--record updates an exported model directory's metadata.json: give "
            f"--model {d.parent}, not the file {d.name}"
        )
    path = d / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"--record needs an exported model directory; no {path}")
    return path


def record_in_metadata(model_dir: str | os.PathLike, name: str, metrics: dict) -> Path:
    """Store the headline numbers of one ``evaluate`` run in an exported model's
    ``metadata.json`` under ``metrics[name]`` (depth, segmentation and normals summaries, the
    baselines beside them, the data set and frame count), replacing the file atomically.

    Returns:
        the metadata path.

    Raises:
        FileNotFoundError: ``model_dir`` is not a directory with a ``metadata.json``.
    """
    path = _record_target(model_dir)
    meta = load_metadata(path)
    keep = (
        "dataset",
        "n_frames",
        "settings",
        "depth",
        "segmentation",
        "normals",
        "baselines",
        "margins",
    )
    meta.metrics[name] = _nan_to_none({k: metrics[k] for k in keep if k in metrics})
    return meta.save(path)


def _check_args(args: argparse.Namespace) -> None:
    """Refuse what would fail only after the whole evaluation (ValueError / FileNotFoundError)."""
    if args.figure_rows < 1:
        raise ValueError(f"--figure-rows must be >= 1, got {args.figure_rows}")
    if args.max_depth is not None and not (math.isfinite(args.max_depth) and args.max_depth > 0):
        raise ValueError(f"--max-depth must be a finite number of metres > 0, got {args.max_depth}")
    if args.num_classes is not None and args.num_classes < 1:
        raise ValueError(f"--num-classes must be >= 1, got {args.num_classes}")
    out = Path(args.out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise ValueError(f"--out {out}: {p} exists and is not a directory")
    if args.record is not None:
        if not args.record.strip():
            raise ValueError("--record needs a name")
        _record_target(args.model)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns 0 on success, 2 on bad arguments or inputs, 130 when
    interrupted (files in ``--out`` are then those of before, or of this run when it was
    already writing them)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("evaluate: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from joint_perception.data.registry import build_dataset

    try:
        _check_args(args)
        ds_cfg = _parse_args_kv(args.arg)
        if args.root:
            ds_cfg["root"] = args.root
        if args.num_classes and args.dataset in ("nyu_folder", "nyud_mt", "nyuv2_labeled"):
            ds_cfg.setdefault("num_classes", args.num_classes)
        dataset = build_dataset(args.dataset, args.split, **ds_cfg)
        pipeline = load_model(args.model, args.backend, args.input_size, **thread_options(args))
        max_depth = args.max_depth or float(pipeline.metadata.max_depth)
        metrics, rows = evaluate(
            pipeline, dataset, max_depth, args.eigen_crop, args.num_classes, args.figure_rows
        )
        if not rows:
            raise ValueError(f"no frames to evaluate in {args.dataset} ({args.split})")
        figure = render_figure(rows, pipeline.metadata, max_depth)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    metrics["dataset"] = {
        "name": args.dataset,
        "split": args.split,
        **{k: str(v) for k, v in ds_cfg.items()},
    }
    metrics["model"]["path"] = str(args.model)
    out = Path(args.out)
    # everything is computed: the three files are written one after the other
    atomic_write_json(out / "metrics.json", _nan_to_none(metrics))
    atomic_write_text(out / "metrics.md", markdown_table(metrics) + "\n")
    atomic_write_bytes(out / "figure.png", figure)
    log.info("wrote %s, %s, %s", out / "metrics.json", out / "metrics.md", out / "figure.png")
    if args.record:
        log.info(
            "recorded as %r in %s",
            args.record,
            record_in_metadata(args.model, args.record, metrics),
        )
    print(
        json.dumps(
            _nan_to_none(
                {k: metrics[k] for k in ("depth", "segmentation", "normals") if k in metrics}
            ),
            indent=1,
        )[:2000]
    )
    versus = baseline_table(metrics)
    if versus:
        print("model vs trivial baselines (constant depth, layout band):")
        for row in versus[1]:
            print("  " + " | ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
