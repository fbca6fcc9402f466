"""Train a joint network from a recipe with Lightning (:func:`run`).

The ``train`` command (:mod:`joint_perception.export.train_command`) calls :func:`run` and then
exports the result; this module only trains. The configuration is checked against the schema of
``training.config`` (unknown keys at any depth, types, model / data set / Trainer arguments).

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
   end, ``checkpoints/best-*.ckpt`` by ``checkpoint.monitor``, and ``last.ckpt`` once more
   when training ends (so it holds the final step). ``--resume auto`` continues from
   ``last.ckpt`` after a crash or ``kill -9`` (optimiser, schedule, step and epoch restored);
   temporaries of a killed save are removed at start. Checkpoints are read with
   ``weights_only=True`` only (:mod:`joint_perception.weights_io`);
4. records the finished training in ``run_dir/run_state.json`` (:data:`RUN_STATE`, status
   ``trained``; the ``train`` command sets ``exported`` once the export is in place), so that
   ``--resume auto`` after a finished run, or after a kill during the export, does not train
   again (:func:`load_trained_run`);
5. returns a :class:`TrainedRun`: the summary and the network holding the weights to deploy
   (the best checkpoint by ``checkpoint.monitor``, else the final weights).

A missing data set, weights file or task ground truth (a model that trains normals on data
without normals) stops the run before training with a message, not a traceback.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO

from joint_perception.io_utils import (
    atomic_open,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temps,
)
from joint_perception.training.config import resolve_config
from joint_perception.weights_io import load_weights

log = logging.getLogger("joint_perception.train")

__all__ = [
    "run",
    "TrainedRun",
    "AtomicCheckpointIO",
    "resolve_resume",
    "RUN_STATE",
    "read_run_state",
    "write_run_state",
    "load_trained_run",
]

#: ``run_dir/run_state.json``: ``{"status": "trained" | "exported", "summary", "validation",
#: "export_dir"}``, written atomically when training has ended and again after the export
RUN_STATE = "run_state.json"


@dataclass
class TrainedRun:
    """The outcome of :func:`run`.

    Attributes:
        cfg: the resolved configuration.
        summary: ``run_dir``, ``last_checkpoint``, ``best_checkpoint``, ``best_score``,
            ``global_step``, ``epochs``.
        model: the trained network on the CPU in eval mode, holding the weights to deploy
            (the best checkpoint's when one was kept, else the final weights, which are never
            older than ``last.ckpt``: a periodic save may lag the last optimiser steps).
        validation: the last logged ``val/...`` metrics.
        is_global_zero: this process is rank 0 (the one that writes exports).
    """

    cfg: dict[str, Any]
    summary: dict[str, Any]
    model: Any
    validation: dict[str, float] = field(default_factory=dict)
    is_global_zero: bool = True


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
        ValueError: an explicit path that is a directory.
    """
    if resume is None:
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    p = Path(resume)
    if not p.exists():
        raise FileNotFoundError(f"--resume checkpoint not found: {p}")
    if not p.is_file():
        raise ValueError(f"--resume {p}: a Lightning checkpoint file (.ckpt), not a directory")
    return str(p)


def read_run_state(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's :data:`RUN_STATE`, or None when there is none (or it is unreadable)."""
    path = Path(run_dir) / RUN_STATE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "status" in state else None


def write_run_state(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write :data:`RUN_STATE` atomically."""
    return atomic_write_json(Path(run_dir) / RUN_STATE, state)


def load_trained_run(cfg: dict[str, Any]) -> TrainedRun | None:
    """The finished training of ``cfg["run_dir"]`` without training again, or None.

    Used by ``--resume auto``: when :data:`RUN_STATE` says training ended, the network is
    rebuilt from the checkpoint it names (best, else the final ``last.ckpt``) and the export
    can run (again).

    Raises:
        ValueError: the state names a checkpoint that is missing or unreadable.
    """
    from joint_perception.models.serialization import load_checkpoint_model

    cfg = resolve_config(cfg)
    state = read_run_state(cfg["run_dir"])
    if state is None or state.get("status") not in ("trained", "exported"):
        return None
    summary = dict(state["summary"])
    ckpt = summary.get("best_checkpoint") or summary.get("last_checkpoint")
    if not ckpt or not Path(ckpt).is_file():
        raise ValueError(
            f"{Path(cfg['run_dir']) / RUN_STATE}: training ended, but its checkpoint {ckpt} is "
            "missing; delete the state file to train again"
        )
    model = load_checkpoint_model(ckpt).cpu().eval()
    return TrainedRun(cfg, summary, model, dict(state.get("validation") or {}), True)


def _existing_best(best_path: str | None, ckpt_dir: Path) -> str | None:
    """The best checkpoint on disk: ``best_path`` when it exists, else the one ``best-*.ckpt``
    that ``save_top_k=1`` keeps (a ``last.ckpt`` saved before a newer best names the best that
    was then deleted)."""
    if best_path and Path(best_path).is_file():
        return best_path
    found = sorted(ckpt_dir.glob("best-*.ckpt"))
    if best_path or found:
        log.warning(
            "best checkpoint %s is gone; using %s",
            best_path,
            found[-1] if found else "the final weights",
        )
    return str(found[-1]) if found else None


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


def run(cfg: dict[str, Any], resume: str | None = None) -> TrainedRun:
    """Train from a configuration (resolved and checked here with
    ``training.config.resolve_config``: missing keys take the recipe defaults).

    Raises:
        ValueError: an invalid configuration (``training.config.RecipeError``).
    """
    import lightning
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from joint_perception.training.datamodule import (
        JointDataModule,
        check_task_targets,
        val_tags,
    )
    from joint_perception.training.lightning_module import JointLightningModule
    from joint_perception.training.progress import LogProgress, progress_bar_wanted

    cfg = resolve_config(cfg)
    run_dir = Path(cfg["run_dir"])
    ckpt_dir = run_dir / "checkpoints"
    lightning.seed_everything(int(cfg["seed"]), workers=True)
    for d in (run_dir, ckpt_dir):
        remove_stale_temps(d)
    ckpt_path = resolve_resume(resume, run_dir)
    if ckpt_path is not None:
        ckpt = load_weights(ckpt_path)  # refuses pickled objects with a message naming the file
        if not isinstance(ckpt, dict) or "pytorch-lightning_version" not in ckpt:
            raise ValueError(
                f"--resume {ckpt_path}: not a Lightning training checkpoint (an exported "
                "model.pt starts a new run with model.init_from instead)"
            )
        del ckpt

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
    callbacks = [LearningRateMonitor(logging_interval="step")]
    trainer_cfg["enable_progress_bar"] = progress_bar_wanted(trainer_cfg.get("enable_progress_bar"))
    if not trainer_cfg["enable_progress_bar"]:
        callbacks.append(LogProgress(int(trainer_cfg.get("log_every_n_steps") or 50)))
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
    # after best_cb: last.ckpt then records the best that was just saved, not its predecessor
    callbacks.append(last_cb)
    if not vspecs:
        trainer_cfg["limit_val_batches"] = 0
    trainer = lightning.Trainer(
        default_root_dir=str(run_dir),
        callbacks=callbacks,
        logger=_loggers(run_dir),
        plugins=[AtomicCheckpointIO()],
        **trainer_cfg,
    )
    if trainer.is_global_zero:
        write_run_state(run_dir, {"status": "training"})  # a previous run's state is void
        atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
        log.info(
            "run directory %s%s", run_dir, f" (resuming from {ckpt_path})" if ckpt_path else ""
        )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    # the final step, whatever every_n_train_steps was: a resume of a finished run ends here
    last_path = ckpt_dir / "last.ckpt"
    # a full checkpoint (optimiser and loop state: what a resume needs); saving, not loading
    trainer.save_checkpoint(str(last_path), weights_only=False)

    summary = {
        "run_dir": str(run_dir),
        "last_checkpoint": str(last_path),
        "best_checkpoint": _existing_best(best_cb.best_model_path or None, ckpt_dir)
        if best_cb
        else None,
        "best_score": float(best_cb.best_model_score)
        if best_cb and best_cb.best_model_score is not None
        else None,
        "global_step": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
    }
    if summary["best_checkpoint"]:
        state = load_weights(summary["best_checkpoint"])
        module.load_state_dict(state["state_dict"])
        log.info("best checkpoint %s", summary["best_checkpoint"])
    validation = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if trainer.is_global_zero:
        write_run_state(
            run_dir, {"status": "trained", "summary": summary, "validation": validation}
        )
    return TrainedRun(cfg, summary, module.model.cpu().eval(), validation, trainer.is_global_zero)


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
