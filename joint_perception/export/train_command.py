"""``train``: train a joint network from a recipe, then export it for deployment.

Usage::

    train --config config/train/smoke.yaml [key.sub=value ...] [--resume auto|PATH]
    ros2 run joint_perception train --config config/train/realtime.yaml trainer.devices=2

The recipe and the overrides are checked against the schema of ``training.config`` (unknown
keys at any depth, types, model / data set / Trainer arguments); a bad one exits with status 2
and a message naming the file or override and the full key path.

Training is :func:`joint_perception.training.train.run` (checkpoints, logs, resume: see there);
then, on rank 0 and unless ``export.enabled`` is false, :func:`export_run` writes the deployable
model to ``run_dir/export/`` with :func:`joint_perception.export.onnx_export.export_onnx`
(model.onnx + model.pt + metadata.json with the training provenance, ONNX Runtime checked
against PyTorch to 1e-4) and, when ``tensorrt`` imports, builds an engine through
:func:`joint_perception.export.export_engine.build_engine_with_gate`. The command lives in the
export tooling layer because it composes training and export; ``training`` never imports
``export``.

A finished run whose export fails its parity check is reported with the kept checkpoint
(``summary["export_error"]``), not a traceback.

``--resume auto`` is idempotent (``run_dir/run_state.json``, see
:func:`joint_perception.training.train.load_trained_run`): a finished and exported run says so
and exits 0 without training; a run killed after training (during the export) exports again
without training; otherwise training continues from ``last.ckpt``. The export directory is
replaced as a whole (``export_onnx``), so a kill during the export leaves the previous export
or none, never a torn one.

``main(argv)`` returns the exit status (0 ok, 2 bad recipe/arguments/data, 1 trained but the
export failed).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from joint_perception.export.onnx_export import export_onnx
from joint_perception.runtime.tensorrt_engine import BuildOptions
from joint_perception.training.config import check_keys, load_config
from joint_perception.training.train import (
    TrainedRun,
    load_trained_run,
    read_run_state,
    run,
    write_run_state,
)

log = logging.getLogger("joint_perception.train")

__all__ = ["main", "export_run", "train_and_export"]


def export_run(trained: TrainedRun) -> Path:
    """Export a finished run to ``run_dir/export/`` (and build a gated TensorRT engine where
    TensorRT is installed); returns the export directory.

    Raises:
        ValueError, RuntimeError: from the export (ONNX checks, parity with PyTorch).
    """
    cfg, summary = trained.cfg, trained.summary
    size = cfg["export"]["input_size"] or cfg["input_size"]
    checkpoint = summary["best_checkpoint"] or f"final weights (step {summary['global_step']})"
    overrides = {
        "training": {
            "recipe": cfg["recipe"],
            "data": {"train": cfg["data"]["train"], "val": cfg["data"]["val"]},
            "seed": cfg["seed"],
            "init_from": cfg["model"]["init_from"],
            "global_step": summary["global_step"],
            "epochs": summary["epochs"],
            "checkpoint": checkpoint,
            "monitor": cfg["checkpoint"]["monitor"],
            "best_score": summary["best_score"],
        },
        "metrics": {"last_validation": trained.validation} if trained.validation else {},
    }
    if cfg["data"]["canonical_focal"]:
        overrides["canonical_focal"] = float(cfg["data"]["canonical_focal"])
    out_dir = Path(cfg["run_dir"]) / "export"
    export_onnx(
        trained.model,
        out_dir,
        size,
        opset=int(cfg["export"]["opset"]),
        metadata_overrides=overrides,
        verify_atol=float(cfg["export"]["verify_atol"]),
    )
    _maybe_tensorrt(cfg, out_dir)
    return out_dir


def check_export_options(cfg: dict) -> None:
    """Refuse unknown ``export.tensorrt`` keys (the ``BuildOptions`` fields) before training.

    Raises:
        joint_perception.training.config.RecipeError: naming the key path.
    """
    fields = [f.name for f in dataclasses.fields(BuildOptions)]
    check_keys("export.tensorrt", (cfg.get("export") or {}).get("tensorrt") or {}, fields)


def train_and_export(cfg: dict, resume: str | None = None) -> dict:
    """:func:`~joint_perception.training.train.run`, then :func:`export_run` on rank 0 when
    ``export.enabled``; returns the run summary with ``export_dir`` (None when not exported).

    Raises:
        ValueError: an invalid recipe (before any training).
    """
    check_export_options(cfg)
    if resume == "auto":
        finished = _finished_run(cfg)
        if finished is not None:
            return finished
        trained = load_trained_run(cfg)
        if trained is not None:
            log.info("training of %s had ended: exporting it (not training again)", cfg["run_dir"])
    else:
        trained = None
    if trained is None:
        trained = run(cfg, resume)
    summary = dict(trained.summary, export_dir=None)
    if trained.is_global_zero and trained.cfg["export"]["enabled"]:
        try:
            summary["export_dir"] = str(export_run(trained))
            write_run_state(
                trained.cfg["run_dir"],
                {
                    "status": "exported",
                    "summary": trained.summary,
                    "validation": trained.validation,
                    "export_dir": summary["export_dir"],
                },
            )
        except RuntimeError as exc:  # ONNX Runtime parity (or TensorRT) failure
            kept = summary["best_checkpoint"] or summary["last_checkpoint"]
            summary["export_error"] = str(exc)
            log.error(
                "training finished, but the export failed: %s. The checkpoint is kept: %s "
                "(re-export it with export_onnx --checkpoint %s)",
                exc,
                kept,
                kept,
            )
    return summary


def _finished_run(cfg: dict) -> dict | None:
    """The summary of a run that trained and exported (its export still in place), else None."""
    state = read_run_state(cfg["run_dir"])
    if state is None or state.get("status") != "exported":
        return None
    export_dir = state.get("export_dir")
    if not export_dir or not (Path(export_dir) / "metadata.json").is_file():
        return None
    return dict(state["summary"], export_dir=export_dir, already_finished=True)


def _maybe_tensorrt(cfg: dict, out_dir: Path) -> None:
    if importlib.util.find_spec("tensorrt") is None:
        log.info(
            "tensorrt not importable: skipping the engine build (run export_engine on the target)"
        )
        return
    from joint_perception.export.export_engine import build_engine_with_gate

    opts = BuildOptions(**cfg["export"]["tensorrt"])
    entry = build_engine_with_gate(out_dir, opts)
    log.info("TensorRT engine built: %s", getattr(entry, "engine_path", entry))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train", description="Train a joint_perception network from a YAML recipe."
    )
    p.add_argument("--config", required=True, help="recipe YAML, e.g. config/train/smoke.yaml")
    p.add_argument(
        "--resume",
        default=None,
        help="'auto' (run_dir/checkpoints/last.ckpt if present) or a .ckpt",
    )
    p.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. optim.lr=0.01 trainer.devices=4"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except (FileNotFoundError, ValueError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    try:
        summary = train_and_export(cfg, args.resume)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    if summary.get("already_finished"):
        print(
            f"train: {cfg['run_dir']} already finished at step {summary['global_step']} "
            f"(export: {summary['export_dir']}); nothing to do"
        )
        return 0
    log.info("done: %s", summary)
    if summary.get("export_error"):
        kept = summary["best_checkpoint"] or summary["last_checkpoint"]
        print(
            f"train: trained to step {summary['global_step']}; checkpoint kept at {kept}; "
            f"export failed: {summary['export_error']}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
