"""``train``: train a joint network from a recipe with Lightning, then export it.

Usage::

    train --config config/train/smoke.yaml [key.sub=value ...] [--resume auto|PATH]
    ros2 run joint_perception train --config config/train/realtime.yaml trainer.devices=2

The recipe and the overrides are checked against the schema of ``training.config`` (unknown
keys at any depth, types, model / data set / Trainer arguments); a bad one exits with status 2
and a message naming the file or override and the full key path.

What a run does (all outputs under the recipe's ``run_dir``):

1. seeds everything (``seed``; data loader workers too) and writes the resolved recipe to
   ``run_dir/config.yaml``;
2. trains with ``lightning.Trainer`` on any accelerator / device count / node count
   (``trainer.*``: DDP and multi-node through Lightning's launcher, SLURM or torchrun — see
   the comments in ``config/train/realtime.yaml``), optional mixed precision
   (``trainer.precision=16-mixed`` / ``bf16-mixed``), progress bar, TensorBoard logs in
   ``run_dir/logs/version_N`` and CSV in ``run_dir/logs/version_N/csv/metrics.csv`` (one N per
   start, so a resumed run never overwrites earlier logs);
3. checkpoints atomically (temporary file + fsync + rename, :class:`AtomicCheckpointIO`):
   ``checkpoints/last.ckpt`` every ``checkpoint.every_n_train_steps`` steps and at each epoch
   end, ``checkpoints/best-*.ckpt`` by ``checkpoint.monitor``. ``--resume auto`` continues from
   ``last.ckpt`` after a crash or ``kill -9`` (optimiser, schedule, step and epoch restored);
4. exports the best checkpoint (else the last weights) with
   ``export.onnx_export.export_onnx`` to ``run_dir/export/`` (model.onnx + model.pt +
   metadata.json, ONNX Runtime checked against PyTorch to ``export.verify_atol``, 1e-4) and,
   when ``tensorrt`` imports, builds an engine through
   ``export.tensorrt_build.build_engine_with_gate``; a failed check is logged with the
   checkpoint to re-export (``summary["export_error"]``).

A missing data set, weights file or task ground truth (a model that trains normals on data
without normals) stops the run before training with a message, not a traceback. After a
finished run an export that fails its parity check is reported with the kept checkpoint.

``main(argv)`` returns the exit status (0 ok, 2 bad recipe/arguments/data, 1 trained but the
export failed).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO

from joint_perception.io_utils import atomic_open, atomic_write_text
from joint_perception.training.config import load_config, resolve_config

log = logging.getLogger("joint_perception.train")

__all__ = ["main", "run", "AtomicCheckpointIO", "resolve_resume"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that never leaves a half-written ``.ckpt`` (a crash or
    ``kill -9`` during a save keeps the previous file): writes a temporary sibling, fsyncs and
    renames it over the target (``io_utils.atomic_open``)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


def resolve_resume(resume: str | None, run_dir: Path) -> str | None:
    """``None`` -> fresh run; ``"auto"`` -> ``run_dir/checkpoints/last.ckpt`` if it exists;
    otherwise a checkpoint path that must exist.

    Raises:
        FileNotFoundError: an explicit path that does not exist.
    """
    if resume is None:
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    p = Path(resume)
    if not p.exists():
        raise FileNotFoundError(f"--resume checkpoint not found: {p}")
    return str(p)


def _loggers(run_dir: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    # one logs/version_N per (re)start, shared by both loggers (a resume never overwrites logs)
    logs = run_dir / "logs"
    version = sum(1 for p in logs.glob("version_*") if p.is_dir()) if logs.is_dir() else 0
    loggers = [
        CSVLogger(str(logs), name=f"version_{version}", version="csv")
    ]  # logs/version_N/csv/
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.insert(
            0,
            TensorBoardLogger(str(run_dir), name="logs", version=version, default_hp_metric=False),
        )
    else:
        log.warning("tensorboard not installed: CSV logs only")
    return loggers


def run(cfg: dict[str, Any], resume: str | None = None) -> dict[str, Any]:
    """Train (and export) from a configuration (resolved and checked here with
    ``training.config.resolve_config``: missing keys take the recipe defaults); returns a
    summary dict with ``run_dir``, ``best_checkpoint``, ``last_checkpoint``, ``global_step``,
    ``export_dir``.

    Raises:
        ValueError: an invalid configuration (``training.config.RecipeError``).
    """
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from joint_perception.training.datamodule import (
        JointDataModule,
        check_task_targets,
        val_tags,
    )
    from joint_perception.training.lightning_module import JointLightningModule

    cfg = resolve_config(cfg)
    run_dir = Path(cfg["run_dir"])
    ckpt_dir = run_dir / "checkpoints"
    L.seed_everything(int(cfg["seed"]), workers=True)
    ckpt_path = resolve_resume(resume, run_dir)

    trainer_cfg = {k: v for k, v in cfg["trainer"].items() if v is not None}
    grad_clip = None
    if cfg["optim"]["em"]:
        # manual optimisation: clipping is done by the module
        grad_clip = trainer_cfg.pop("gradient_clip_val", None)
        trainer_cfg.pop("accumulate_grad_batches", None)
    vspecs = cfg["data"]["val"]
    module = JointLightningModule(
        cfg["model"], cfg["optim"], cfg["stages"], val_tags(vspecs) or ["val"], grad_clip=grad_clip
    )
    dm = JointDataModule(cfg["data"], cfg["input_size"], module.model.mean, module.model.std)
    dm.setup("fit")  # builds the data sets now: a missing file or ground truth stops here
    check_task_targets(
        module.model.tasks,
        dm.train_parts,
        cfg["data"]["train"],
        module.model.arch,
        cfg["data"]["allow_missing_targets"],
    )
    _warn_stage_epochs(cfg)

    ck = cfg["checkpoint"]
    last_cb = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="step{step:07d}",
        save_top_k=0,
        save_last=True,
        every_n_train_steps=ck["every_n_train_steps"] or None,
        auto_insert_metric_name=False,
    )
    callbacks = [last_cb, LearningRateMonitor(logging_interval="step")]
    best_cb = None
    if vspecs and ck["monitor"]:
        best_cb = ModelCheckpoint(
            dirpath=str(ckpt_dir),
            filename="best-epoch{epoch:03d}-step{step:07d}",
            monitor=ck["monitor"],
            mode=ck["mode"],
            save_top_k=1,
            auto_insert_metric_name=False,
        )
        callbacks.append(best_cb)
    if not vspecs:
        trainer_cfg["limit_val_batches"] = 0
    trainer = L.Trainer(
        default_root_dir=str(run_dir),
        callbacks=callbacks,
        logger=_loggers(run_dir),
        plugins=[AtomicCheckpointIO()],
        **trainer_cfg,
    )
    if trainer.is_global_zero:
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        log.info(
            "run directory %s%s", run_dir, f" (resuming from {ckpt_path})" if ckpt_path else ""
        )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)

    summary = {
        "run_dir": str(run_dir),
        "last_checkpoint": last_cb.last_model_path or None,
        "best_checkpoint": (best_cb.best_model_path or None) if best_cb else None,
        "best_score": float(best_cb.best_model_score)
        if best_cb and best_cb.best_model_score is not None
        else None,
        "global_step": int(trainer.global_step),
        "export_dir": None,
    }
    if trainer.is_global_zero and cfg["export"]["enabled"]:
        try:
            summary["export_dir"] = str(_export(cfg, module, summary, trainer))
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


def _warn_stage_epochs(cfg: dict) -> None:
    """Log when the stages do not add up to ``trainer.max_epochs`` (the last stage then runs
    longer, or a stage is never reached)."""
    from joint_perception.training.schedule import normalise_stages

    stages = normalise_stages(cfg["stages"])
    total = sum(s.epochs for s in stages)
    if stages and total != int(cfg["trainer"]["max_epochs"]):
        log.warning(
            "stages add up to %d epochs but trainer.max_epochs is %d: %s",
            total,
            cfg["trainer"]["max_epochs"],
            "the last stage runs on"
            if total < cfg["trainer"]["max_epochs"]
            else "later stages are cut",
        )


def _export(cfg: dict, module, summary: dict, trainer) -> Path:
    from joint_perception.export.onnx_export import export_onnx

    # The best checkpoint by the monitored metric; without one (no validation ran, e.g. a run
    # stopped by trainer.max_time) the final in-memory weights, which are never older than
    # last.ckpt (a periodic save may lag the last optimiser steps).
    ckpt = summary["best_checkpoint"]
    model = module.model
    if ckpt:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
        log.info("exporting %s", ckpt)
    model = model.cpu().eval()
    size = cfg["export"]["input_size"] or cfg["input_size"]
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    overrides = {
        "training": {
            "recipe": cfg["recipe"],
            "data": {"train": cfg["data"]["train"], "val": cfg["data"]["val"]},
            "seed": cfg["seed"],
            "init_from": cfg["model"]["init_from"],
            "global_step": summary["global_step"],
            "epochs": int(trainer.current_epoch),
            "checkpoint": ckpt or f"final weights (step {summary['global_step']})",
            "monitor": cfg["checkpoint"]["monitor"],
            "best_score": summary["best_score"],
        },
        "metrics": {"last_validation": metrics} if metrics else {},
    }
    if cfg["data"]["canonical_focal"]:
        overrides["canonical_focal"] = float(cfg["data"]["canonical_focal"])
    out_dir = Path(cfg["run_dir"]) / "export"
    export_onnx(
        model,
        out_dir,
        size,
        opset=int(cfg["export"]["opset"]),
        metadata_overrides=overrides,
        verify_atol=float(cfg["export"]["verify_atol"]),
    )
    _maybe_tensorrt(cfg, out_dir)
    return out_dir


def _maybe_tensorrt(cfg: dict, out_dir: Path) -> None:
    if importlib.util.find_spec("tensorrt") is None:
        log.info(
            "tensorrt not importable: skipping the engine build (run export_engine on the target)"
        )
        return
    from joint_perception.export.tensorrt_build import BuildOptions, build_engine_with_gate

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
        summary = run(cfg, args.resume)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
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
