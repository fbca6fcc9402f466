"""LightningModule wrapping any :class:`~joint_perception.models.base.JointModel`.

* builds the network with ``models.build_model(name, **cfg)`` and trains it with the model's
  own ``compute_losses`` (the paper losses live with the models);
* paper schemes through the JointModel hooks and :mod:`joint_perception.training.schedule`:
  ``stages`` switched at epoch boundaries (``stages: [e1, e2, e3]`` = epochs per stage, or
  mappings with a stage's ``epochs``, ``lr``, ``freeze`` and ``model_stage``; ``set_stage(k)``
  with 1-based stages; none = stage 0), per-layer learning rates from ``optim.groups`` (else
  the model's ``param_groups(lr)``, e.g. CI-Net backbone x0.1), frozen modules per stage, and
  ``em_groups()`` for EM alternation (SOSD-Net): manual optimisation with one optimiser per
  parameter group, alternating a depth step (depth + normal losses) and a semantic step
  (segmentation loss) every iteration;
* SGD / Adam / AdamW, poly / cosine / constant schedules with linear warm-up, stepped per
  iteration over ``trainer.estimated_stepping_batches`` (restarted per stage with
  ``optim.schedule_per_stage``), times the running stage's ``lr / optim.lr``;
* validation with :class:`joint_perception.accuracy.AccuracyEvaluator` (the scoring of
  ``evaluate`` and ``replay``; its additive state summed across DDP ranks), logged as
  ``val/abs_rel``, ``val/rmse``, ``val/delta1``, ``val/miou``,
  ``val/normal_mean`` (first validation set) and ``val/<tag>/<metric>`` for every set.

``model.init_from`` (a path: an exported model directory such as ``models/realtime``, its
``model.pt``, or a Lightning ``.ckpt``) starts from those weights instead of the backbone's
initialisation — the way a robot team fine-tunes the shipped default on its own recordings. The
architecture must match; tensors whose shape differs (e.g. a segmentation head for another class
count) are kept at their fresh initialisation only with ``model.init_strict: false``, and are
listed in the log. The path is not a constructor argument and is not saved with the
hyper-parameters (a checkpoint never depends on the file it started from).

Hyper-parameters are saved as ``{"architecture", "model", "optim", "stages", ...}`` so
``models.serialization.load_checkpoint_model`` rebuilds the network from a ``.ckpt``.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning
import numpy as np
import torch

from joint_perception.accuracy import AccuracyEvaluator, FrameReference
from joint_perception.models import build_model
from joint_perception.models.serialization import load_checkpoint_model
from joint_perception.training.config import resolve_section
from joint_perception.training.schedule import (
    StagedLR,
    build_param_groups,
    check_module_prefixes,
    frozen_batchnorms,
    lr_lambda,
    normalise_stages,
    set_frozen,
    stage_for_epoch,
    stage_index_for_epoch,
)

log = logging.getLogger(__name__)

__all__ = ["JointLightningModule", "stage_for_epoch", "lr_lambda", "init_from_weights"]
# stage_for_epoch and lr_lambda live in training.schedule (re-exported here)


def init_from_weights(
    model: torch.nn.Module, arch: str, path: str, strict: bool = True
) -> dict[str, list[str]]:
    """Copy the weights of an exported model / checkpoint into a freshly built ``model``.

    Args:
        model: the network to initialise (built by ``models.build_model(arch, ...)``).
        arch: its registry name; the file must hold the same architecture.
        path: exported model directory, ``model.pt`` or Lightning ``.ckpt``.
        strict: refuse any missing, unexpected or shape-mismatched tensor; False skips the
            shape-mismatched ones (e.g. another class count) and loads the rest.

    Returns:
        ``{"loaded": [...], "skipped": [...]}`` tensor names.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: another architecture, or (strict) tensors that do not fit — the message
            names the file and the first offending tensors.
    """
    source = load_checkpoint_model(path)
    if source.arch != arch:
        raise ValueError(
            f"init_from {path}: holds a {source.arch!r} network, the recipe builds {arch!r}"
        )
    src = source.state_dict()
    own = model.state_dict()
    mismatched = sorted(k for k, v in src.items() if k in own and own[k].shape != v.shape)
    missing = sorted(set(own) - set(src))
    unexpected = sorted(set(src) - set(own))
    if strict and (mismatched or missing or unexpected):
        raise ValueError(
            f"init_from {path}: weights do not fit the recipe's {arch!r} network: shape-mismatched "
            f"{mismatched[:4]}, missing {missing[:4]}, unexpected {unexpected[:4]} "
            "(set model.init_strict=false to keep those at their fresh initialisation)"
        )
    usable = {k: v for k, v in src.items() if k in own and k not in mismatched}
    model.load_state_dict(usable, strict=False)
    return {"loaded": sorted(usable), "skipped": sorted(set(own) - set(usable))}


class JointLightningModule(lightning.LightningModule):
    """Train / validate a joint network.

    Args:
        model_cfg: ``{"name": registry name, **constructor kwargs}``.
        optim_cfg: the recipe's ``optim`` section (:class:`training.config.OptimConfig`);
            missing keys take the recipe defaults, unknown keys are refused.
        stages: epochs per stage or stage mappings (``training.schedule.StageSpec``).
        val_tags: names of the validation sets (metric key prefixes).
        max_depth: GT cap for the depth metrics (metres).
        num_classes: for the segmentation metrics (default: the model's).
        grad_clip: gradient-norm clip applied by the module itself under ``optim.em`` (manual
            optimisation, where Lightning's ``gradient_clip_val`` is off); None = none.
    """

    def __init__(
        self,
        model_cfg: Mapping[str, Any],
        optim_cfg: Mapping[str, Any] | None = None,
        stages: Sequence[int] = (),
        val_tags: Sequence[str] = ("val",),
        max_depth: float | None = None,
        num_classes: int | None = None,
        grad_clip: float | None = None,
    ):
        super().__init__()
        model_cfg = dict(model_cfg)
        if "name" not in model_cfg:
            raise ValueError(
                f"model config needs a 'name' (registry), got keys {sorted(model_cfg)}"
            )
        name = model_cfg.pop("name")
        init_from = model_cfg.pop("init_from", None)
        init_strict = bool(model_cfg.pop("init_strict", True))
        self.optim_cfg = resolve_section("optim", optim_cfg)
        self.grad_clip = grad_clip
        self.save_hyperparameters(
            {
                "architecture": name,
                "model": model_cfg,
                "optim": self.optim_cfg,
                "stages": list(stages),
                "val_tags": list(val_tags),
                "max_depth": max_depth,
                "num_classes": num_classes,
                "grad_clip": grad_clip,
            }
        )
        self.model = build_model(name, **model_cfg)
        self.init_report = None
        if init_from:
            self.init_report = init_from_weights(self.model, name, str(init_from), init_strict)
            log.info(
                "initialised from %s: %d tensors loaded, %d kept fresh %s",
                init_from,
                len(self.init_report["loaded"]),
                len(self.init_report["skipped"]),
                self.init_report["skipped"][:6],
            )
        self.stages = normalise_stages(stages)
        # checked now (unknown module names fail before any data is read)
        build_param_groups(self.model, float(self.optim_cfg["lr"]), self.optim_cfg["groups"])
        for i, spec in enumerate(self.stages):
            check_module_prefixes(self.model, spec.freeze, f"stages[{i}].freeze")
        self._trainable: dict[str, bool] | None = None
        self._stage_index: int | None = None
        self._frozen_bns: list[torch.nn.Module] = []
        self._lr_schedules: list[StagedLR] = []
        self.val_tags = list(val_tags)
        self.max_depth = float(max_depth if max_depth is not None else self.model.max_depth)
        self.num_classes = int(num_classes or self.model.num_classes)
        self._forward_takes_batch = "batch" in inspect.signature(self.model.forward).parameters
        self.em = bool(self.optim_cfg["em"])
        if self.em:
            if self.model.em_groups() is None:
                raise ValueError(f"optim.em=true but model {name!r} has no em_groups()")
            self.automatic_optimization = False
        self._val_state: dict[int, dict[str, Any]] = {}

    def on_train_start(self) -> None:
        """Stage boundaries of the LR schedule from the loader length; then, before the first
        step of a fresh run (not on resume): the network's data-dependent initialisation
        (:meth:`JointModel.calibrate`) on the first few training batches."""
        n = self.trainer.num_training_batches
        if self._lr_schedules and isinstance(n, int) and n > 0:
            spe = math.ceil(n / max(int(self.trainer.accumulate_grad_batches), 1))
            for sched in self._lr_schedules:  # EM: each optimiser steps every other batch
                sched.steps_per_epoch = spe / 2 if self.em else spe
        if self.global_step > 0 or self.init_report is not None:
            return
        images = []
        for batch in self.trainer.train_dataloader:
            images.append(batch["image"].to(self.device))
            if len(images) >= 4:
                break
        n = self.model.calibrate(images)
        if n:
            log.info(
                "calibrated %d layers of %s on %d training batches", n, self.model.arch, len(images)
            )

    # ------------------------------------------------------------------ forward / loss
    def forward(self, image: torch.Tensor, batch: dict | None = None) -> dict[str, torch.Tensor]:
        if self._forward_takes_batch:
            return self.model(image, batch=batch)
        return self.model(image)

    def _losses(self, batch: dict) -> dict[str, torch.Tensor]:
        outputs = self(batch["image"], batch)
        losses = self.model.compute_losses(outputs, batch)
        if "total" not in losses:
            raise ValueError(f"{type(self.model).__name__}.compute_losses returned no 'total'")
        return losses

    def on_train_epoch_start(self) -> None:
        k = stage_index_for_epoch(self.stages, self.current_epoch)
        stage = self.stages[k].model_stage if k >= 0 else 0
        if stage != getattr(self.model, "stage", None):
            self.model.set_stage(stage)
        if k != self._stage_index:
            freeze = self.stages[k].freeze if k >= 0 else []
            self._trainable = set_frozen(self.model, freeze, self._trainable)
            self._frozen_bns = frozen_batchnorms(self.model, freeze)
            if k >= 0:
                log.info(
                    "epoch %d: stage %d/%d %r (model stage %d%s%s)",
                    self.current_epoch,
                    k + 1,
                    len(self.stages),
                    self.stages[k].name,
                    stage,
                    f", lr {self.stages[k].lr:g}" if self.stages[k].lr is not None else "",
                    f", frozen {freeze}" if freeze else "",
                )
            self._stage_index = k
        self.log("train/stage", float(k + 1), on_epoch=True, on_step=False)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        for bn in self._frozen_bns:  # frozen modules keep their BatchNorm statistics
            bn.eval()

    def training_step(self, batch: dict, batch_idx: int):
        bs = batch["image"].shape[0]
        if self.em:
            return self._em_step(batch, bs)
        losses = self._losses(batch)
        for k, v in losses.items():
            self.log(
                f"train/{k}",
                v.detach(),
                on_step=True,
                on_epoch=True,
                prog_bar=k == "total",
                batch_size=bs,
            )
        return losses["total"]

    def _em_step(self, batch: dict, bs: int):
        """EM alternation: even steps update the depth side with depth (+ normal) losses, odd
        steps the semantic side with the segmentation loss (SOSD-Net)."""
        opt_d, opt_s = self.optimizers()
        sch_d, sch_s = self.lr_schedulers()
        depth_step = self.global_step % 2 == 0  # global_step counts both optimisers' steps
        losses = self._losses(batch)
        if depth_step:
            loss = sum(v for k, v in losses.items() if k in ("depth", "normals")) or losses["total"]
            opt = opt_d
        else:
            loss = losses.get("segmentation", losses["total"])
            opt = opt_s
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.grad_clip:  # Lightning's own clipping is off in manual mode
            self.clip_gradients(
                opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm"
            )
        opt.step()
        (sch_d if depth_step else sch_s).step()
        for k, v in losses.items():
            self.log(
                f"train/{k}",
                v.detach(),
                on_step=True,
                on_epoch=True,
                prog_bar=k == "total",
                batch_size=bs,
            )
        self.log(
            "train/em_depth_step", float(depth_step), on_step=True, on_epoch=False, batch_size=bs
        )
        return losses["total"].detach()

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_state = {}

    def _evaluator(self, idx: int) -> AccuracyEvaluator:
        if idx not in self._val_state:
            self._val_state[idx] = AccuracyEvaluator(
                self.num_classes,
                max_depth=self.max_depth,
                baselines=False,
                derive_normals=False,
                per_frame=False,
            )
        return self._val_state[idx]

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        ev = self._evaluator(dataloader_idx)
        out = self(batch["image"], None)
        n = batch["image"].shape[0]
        # undo the canonical-focal normalisation: metric = canonical / (f_c / fx)
        scale = batch["focal_scale"].view(-1, 1, 1).double().cpu().numpy()
        gt_depth = batch["depth"][:, 0].double().cpu().numpy() / scale
        gt_depth = np.where(gt_depth > 0, gt_depth, np.nan)
        depth = out["depth"][:, 0].double().cpu().numpy() / scale if "depth" in out else None
        labels = (
            (out["segmentation"].argmax(1) + 1).cpu().numpy() if "segmentation" in out else None
        )
        normals = (
            out["normals"].detach().float().permute(0, 2, 3, 1).cpu().numpy()
            if "normals" in out
            else None
        )
        has_labels = batch["has_labels"].cpu().numpy()
        has_normals = batch["has_normals"].cpu().numpy()
        gt_labels = batch["labels"].cpu().numpy()
        gt_normals = batch["normals"].float().permute(0, 2, 3, 1).cpu().numpy()
        K = batch["K"].double().cpu().numpy()
        for i in range(n):
            ref = FrameReference(
                K=K[i],
                depth=gt_depth[i],
                labels=gt_labels[i] if has_labels[i] else None,
                normals=gt_normals[i] if has_normals[i] else None,
            )
            ev.add(
                batch_idx * n + i,
                None if depth is None else depth[i],
                None if labels is None else labels[i],
                None if normals is None else normals[i],
                ref,
            )
        if "depth" in out:
            tag = self._tag(dataloader_idx)
            key = "val/loss" if dataloader_idx == 0 else f"val/{tag}/loss"
            loss = self._val_loss(out, batch)
            self.log(key, loss, add_dataloader_idx=False, batch_size=n, sync_dist=True)

    def _tag(self, idx: int) -> str:
        return self.val_tags[idx] if idx < len(self.val_tags) else f"val{idx}"

    def _val_loss(self, out, batch) -> torch.Tensor:
        try:
            return self.model.compute_losses(out, batch)["total"].detach()
        except (KeyError, ValueError, RuntimeError):  # models needing aux outputs only in training
            return torch.tensor(float("nan"), device=self.device)

    def _reduce(self, values: np.ndarray) -> np.ndarray:
        """Sum an array over DDP ranks (identity in one process)."""
        t = torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device)
        if self.trainer is not None and self.trainer.world_size > 1:
            t = self.trainer.strategy.reduce(t, reduce_op="sum")
        return t.cpu().numpy()

    def on_validation_epoch_end(self) -> None:
        n_sets = max(len(self.val_tags), max(self._val_state, default=-1) + 1)
        for idx in range(n_sets):
            ev = self._evaluator(idx)
            # the evaluator's state is additive: sum it over the ranks, then compute
            ev.load_state_dict({k: self._reduce(v) for k, v in ev.state_dict().items()})
            agg = ev.aggregate()
            metrics: dict[str, float] = {}
            if agg["depth"]:
                metrics.update(
                    {
                        k: agg["depth"][k]
                        for k in ("abs_rel", "rmse", "delta1", "rmse_log", "coverage")
                    }
                )
            if agg["segmentation"]:
                metrics.update(
                    miou=agg["segmentation"]["miou"], pixel_acc=agg["segmentation"]["pixel_acc"]
                )
            if agg["normals"]:
                metrics["normal_mean"] = agg["normals"]["mean"]
            for k, v in metrics.items():
                if v is None:
                    continue
                self.log(
                    f"val/{self._tag(idx)}/{k}",
                    float(v),
                    add_dataloader_idx=False,
                    rank_zero_only=False,
                )
                if idx == 0:
                    self.log(
                        f"val/{k}",
                        float(v),
                        add_dataloader_idx=False,
                        prog_bar=k in ("abs_rel", "miou"),
                    )

    # ------------------------------------------------------------------ optimisers
    def _make_optimizer(self, groups: list[dict]) -> torch.optim.Optimizer:
        cfg = self.optim_cfg
        name = str(cfg["optimizer"]).lower()
        lr = float(cfg["lr"])
        wd = float(cfg["weight_decay"])
        if name == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=float(cfg["momentum"]), weight_decay=wd)
        betas = tuple(float(b) for b in cfg["betas"])
        if name == "adam":
            return torch.optim.Adam(groups, lr=lr, betas=betas, weight_decay=wd)
        if name == "adamw":
            return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=wd)
        raise ValueError(f"optim.optimizer must be sgd, adam or adamw, got {name!r}")

    def _scheduler(self, opt, total_steps: int) -> dict:
        cfg = self.optim_cfg
        staged = StagedLR(
            self.stages,
            float(cfg["lr"]),
            str(cfg["schedule"]),
            total_steps,
            power=float(cfg["poly_power"]),
            warmup_steps=int(cfg["warmup_steps"]),
            per_stage=bool(cfg["schedule_per_stage"]),
        )
        self._lr_schedules.append(staged)

        def f(step: int) -> float:  # a plain function: LambdaLR does not pickle it
            return staged(step)

        return {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, f), "interval": "step"}

    def _groups(self, params=None) -> list[dict]:
        cfg = self.optim_cfg
        return build_param_groups(
            self.model, float(cfg["lr"]), cfg["groups"], float(cfg["weight_decay"]), params
        )

    def configure_optimizers(self):
        try:
            total = int(self.trainer.estimated_stepping_batches)
        except (AttributeError, RuntimeError):
            total = 1
        self._lr_schedules = []
        if self.em:
            depth_params, sem_params = self.model.em_groups()
            opt_d = self._make_optimizer(self._groups(list(depth_params)))
            opt_s = self._make_optimizer(self._groups(list(sem_params)))
            # each optimiser steps every other iteration
            steps = max(total // 2, 1)
            return [opt_d, opt_s], [self._scheduler(opt_d, steps), self._scheduler(opt_s, steps)]
        opt = self._make_optimizer(self._groups())
        return {"optimizer": opt, "lr_scheduler": self._scheduler(opt, total)}
