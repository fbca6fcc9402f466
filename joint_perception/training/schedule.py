"""Training schedules of the recipes: stages, per-layer learning-rate groups, frozen modules.

The papers train in phases: CI-Net in three stages with their own learning rates and epochs,
PAP at 1e-4 on the pretrained encoder and 0.01 elsewhere, then a fine-tune phase, with task
branches frozen for its KITTI distillation. A recipe states that with two keys:

``optim.groups`` — learning-rate groups by module name (dotted prefixes of the model's
parameter names, as ``model.named_parameters()`` gives them; ``"backbone"`` matches
``backbone.*``). Each group sets an absolute ``lr`` or an ``lr_scale`` of the base LR (and
optionally its own ``weight_decay``); the first group whose prefix matches a parameter takes
it, the rest stay at the base LR. Without groups the model's own ``param_groups(lr)`` applies
(e.g. CI-Net's backbone at 0.1 x). Examples::

    optim: {optimizer: sgd, lr: 0.01, groups: [{name: pretrained, modules: [backbone], lr: 1.0e-4}]}
    optim: {lr: 0.01, groups: [{modules: [backbone], lr_scale: 0.1}]}

``stages`` — a list; each entry is either a number of epochs (the short form, as before) or a
mapping (:class:`StageSpec`)::

    stages:
      - {name: joint, epochs: 200}
      - {name: finetune, epochs: 100, lr: 1.0e-3, freeze: [task_nets.segmentation]}

A stage runs ``model.set_stage(model_stage)`` (default: its 1-based position; models without
staging ignore it), scales every group's LR by ``lr / optim.lr`` (absolute group LRs keep
their ratio to the base) and freezes the parameters under ``freeze`` (``requires_grad`` off,
and their BatchNorm layers kept in eval mode so the running statistics stay too). With
``optim.schedule_per_stage`` the poly / cosine decay restarts in every stage over that stage's
steps; otherwise one decay spans the whole run (stage LRs then multiply it).

Everything here is plain torch (no Lightning): the LightningModule calls these helpers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn

__all__ = [
    "StageSpec",
    "GroupSpec",
    "normalise_stages",
    "stage_for_epoch",
    "stage_index_for_epoch",
    "lr_lambda",
    "StagedLR",
    "build_param_groups",
    "module_prefix_matches",
    "check_module_prefixes",
    "set_frozen",
    "frozen_batchnorms",
]


@dataclass
class StageSpec:
    """One training stage of ``stages`` (see the module docstring).

    Attributes:
        epochs: epochs in this stage (>= 0).
        name: a label for logs (default ``stage<k>``).
        model_stage: value for ``model.set_stage`` (default: the 1-based position).
        lr: base learning rate in this stage (default: ``optim.lr``); group LRs scale with it.
        freeze: module-name prefixes whose parameters do not learn in this stage.
    """

    epochs: int
    name: str | None = None
    model_stage: int | None = None
    lr: float | None = None
    freeze: list[str] = field(default_factory=list)


@dataclass
class GroupSpec:
    """One entry of ``optim.groups``.

    Attributes:
        modules: module-name prefixes (at least one); each must match a parameter.
        name: a label (optimiser group name, LR monitor).
        lr: absolute learning rate at the base LR of ``optim.lr``.
        lr_scale: alternatively, a factor of the base LR (not both).
        weight_decay: this group's weight decay (default: ``optim.weight_decay``).
    """

    modules: list[str]
    name: str | None = None
    lr: float | None = None
    lr_scale: float | None = None
    weight_decay: float | None = None


STAGE_KEYS = tuple(f.name for f in fields(StageSpec))
GROUP_KEYS = tuple(f.name for f in fields(GroupSpec))


def normalise_stages(stages: Sequence[int | Mapping[str, Any]] | None) -> list[StageSpec]:
    """Recipe ``stages`` (ints and/or mappings) -> :class:`StageSpec` list with names and
    model stages filled in.

    Raises:
        ValueError: a negative epoch count, an unknown key, a missing ``epochs``, an ``lr``
            <= 0 (the message names ``stages[i].<key>``).
    """
    out: list[StageSpec] = []
    for i, entry in enumerate(stages or ()):
        where = f"stages[{i}]"
        if isinstance(entry, Mapping):
            unknown = sorted(set(entry) - set(STAGE_KEYS))
            if unknown:
                raise ValueError(
                    f"recipe key {where}.{unknown[0]}: unknown stage key; known: "
                    f"{', '.join(STAGE_KEYS)}"
                )
            if entry.get("epochs") is None:
                raise ValueError(f"recipe key {where}.epochs: missing (epochs of this stage)")
            spec = StageSpec(
                epochs=int(entry["epochs"]),
                name=entry.get("name"),
                model_stage=entry.get("model_stage"),
                lr=None if entry.get("lr") is None else float(entry["lr"]),
                freeze=[str(p) for p in (entry.get("freeze") or [])],
            )
        elif isinstance(entry, bool) or not isinstance(entry, int):
            raise ValueError(
                f"recipe key {where}: a stage is a number of epochs or a mapping, got {entry!r}"
            )
        else:
            spec = StageSpec(epochs=int(entry))
        if spec.epochs < 0:
            raise ValueError(
                f"recipe key stages: epochs per stage must be >= 0, got {spec.epochs} at {where}"
            )
        if spec.lr is not None and not spec.lr > 0:
            raise ValueError(f"recipe key {where}.lr: must be > 0, got {spec.lr}")
        spec.name = spec.name or f"stage{i + 1}"
        spec.model_stage = i + 1 if spec.model_stage is None else int(spec.model_stage)
        out.append(spec)
    return out


def stage_index_for_epoch(stages: Sequence[StageSpec | int], epoch: int) -> int:
    """0-based index of the stage that runs ``epoch``; -1 without stages. After the last
    boundary the last stage stays."""
    if not stages:
        return -1
    end = 0
    for k, s in enumerate(stages):
        end += int(s.epochs if isinstance(s, StageSpec) else s)
        if epoch < end:
            return k
    return len(stages) - 1


def stage_for_epoch(stages: Sequence[StageSpec | int], epoch: int) -> int:
    """1-based stage for ``epoch`` given the stages (or epochs per stage); 0 when there are
    none. After the last boundary the last stage stays active."""
    return stage_index_for_epoch(stages, epoch) + 1


def lr_lambda(schedule: str, total_steps: int, power: float = 0.9, warmup_steps: int = 0):
    """Multiplier of the base LR at step ``s``: linear warm-up, then ``poly``
    ``(1 - s/T)^power`` (DeepLab), ``cosine`` ``0.5 (1 + cos(pi s/T))`` or ``constant``."""
    if schedule not in ("poly", "cosine", "constant"):
        raise ValueError(f"schedule must be poly, cosine or constant, got {schedule!r}")
    total = max(int(total_steps), 1)

    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        return _decay(schedule, step / total, power)

    return f


def _decay(schedule: str, t: float, power: float) -> float:
    t = min(max(t, 0.0), 1.0)
    if schedule == "poly":
        return max(1.0 - t, 0.0) ** power
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0


class StagedLR:
    """LR multiplier with stages: ``lr_k / base_lr`` of the running stage times the decay
    (over the run, or restarted per stage), after a linear warm-up from the first step.

    Args:
        stages: normalised stages (may be empty: plain :func:`lr_lambda`).
        base_lr: ``optim.lr``.
        schedule, power, warmup_steps: as :func:`lr_lambda`.
        total_steps: optimiser steps of the whole run (for the run-wide decay).
        steps_per_epoch: optimiser steps per epoch (sets the stage boundaries; may be set
            later, e.g. once the data loader length is known).
        per_stage: restart the decay in each stage.

    ``__call__(step)`` -> float.
    """

    def __init__(
        self,
        stages: Sequence[StageSpec],
        base_lr: float,
        schedule: str,
        total_steps: int,
        steps_per_epoch: float | None = None,
        power: float = 0.9,
        warmup_steps: int = 0,
        per_stage: bool = False,
    ):
        lr_lambda(schedule, total_steps)  # validates the name
        self.stages = list(stages)
        self.base_lr = float(base_lr)
        self.schedule = schedule
        self.total_steps = max(int(total_steps), 1)
        self.steps_per_epoch = steps_per_epoch
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self.per_stage = bool(per_stage)

    def _stage_at(self, step: int) -> tuple[int, float, float]:
        """(stage index, steps into the stage, steps of the stage)."""
        spe = float(self.steps_per_epoch or 0)
        if not self.stages or spe <= 0:
            return -1, float(step), float(self.total_steps)
        start = 0.0
        for k, s in enumerate(self.stages):
            length = s.epochs * spe
            if step < start + length or k == len(self.stages) - 1:
                return k, step - start, max(length, 1.0)
            start += length
        return len(self.stages) - 1, 0.0, 1.0  # pragma: no cover - loop always returns

    def __call__(self, step: int) -> float:
        k, into, length = self._stage_at(int(step))
        scale = 1.0
        if k >= 0 and self.stages[k].lr is not None:
            scale = self.stages[k].lr / self.base_lr
        if self.warmup_steps and step < self.warmup_steps:
            return scale * (step + 1) / self.warmup_steps
        t = into / length if (self.per_stage and k >= 0) else step / self.total_steps
        return scale * _decay(self.schedule, t, self.power)


def module_prefix_matches(name: str, prefix: str) -> bool:
    """Whether parameter ``name`` lies under the dotted module ``prefix`` (``""`` = all)."""
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _top_level(model: nn.Module) -> str:
    return ", ".join(n for n, _ in model.named_children())


def build_param_groups(
    model: nn.Module,
    base_lr: float,
    groups: Sequence[Mapping[str, Any]] | None,
    weight_decay: float | None = None,
    params: Iterable[nn.Parameter] | None = None,
) -> list[dict]:
    """Optimiser parameter groups from ``optim.groups`` (see the module docstring).

    Args:
        model: the network (its ``named_parameters`` give the names).
        base_lr: ``optim.lr``.
        groups: the recipe's group mappings; empty/None -> ``model.param_groups(base_lr)``
            when the model has it (every JointModel does), restricted to ``params``.
        weight_decay: ``optim.weight_decay`` (for groups that set their own).
        params: restrict to these parameters (e.g. one side of an EM split); default all that
            require gradients.

    Returns:
        torch optimiser group dicts (``params``, ``lr``, ``name``, optional ``weight_decay``);
        groups left empty by ``params`` are dropped.

    Raises:
        ValueError: unknown keys, a group without modules, both/neither of ``lr`` and
            ``lr_scale`` set badly, or a prefix that matches no parameter (the message lists
            the model's top-level modules).
    """
    allowed = None if params is None else {id(p) for p in params}
    named = [
        (n, p)
        for n, p in model.named_parameters()
        if p.requires_grad and (allowed is None or id(p) in allowed)
    ]
    if not groups:
        if hasattr(model, "param_groups"):
            out = []
            for g in model.param_groups(base_lr):
                kept = [p for p in g["params"] if allowed is None or id(p) in allowed]
                if kept:
                    out.append({**g, "params": kept})
            return out
        return [{"params": [p for _, p in named], "lr": base_lr, "name": "all"}]
    specs: list[GroupSpec] = []
    for i, g in enumerate(groups):
        where = f"optim.groups[{i}]"
        unknown = sorted(set(g) - set(GROUP_KEYS))
        if unknown:
            raise ValueError(
                f"recipe key {where}.{unknown[0]}: unknown group key; known: {', '.join(GROUP_KEYS)}"
            )
        modules = g.get("modules")
        if isinstance(modules, str):
            modules = [modules]
        if not modules:
            raise ValueError(f"recipe key {where}.modules: list at least one module prefix")
        if (g.get("lr") is None) == (g.get("lr_scale") is None):
            raise ValueError(f"recipe key {where}: set exactly one of lr and lr_scale")
        specs.append(
            GroupSpec(
                modules=[str(m) for m in modules],
                name=g.get("name") or f"group{i}",
                lr=None if g.get("lr") is None else float(g["lr"]),
                lr_scale=None if g.get("lr_scale") is None else float(g["lr_scale"]),
                weight_decay=None if g.get("weight_decay") is None else float(g["weight_decay"]),
            )
        )
    for i, s in enumerate(specs):
        check_module_prefixes(model, s.modules, f"optim.groups[{i}].modules")
    buckets: list[list[nn.Parameter]] = [[] for _ in specs]
    rest: list[nn.Parameter] = []
    for n, p in named:
        for k, s in enumerate(specs):
            if any(module_prefix_matches(n, m) for m in s.modules):
                buckets[k].append(p)
                break
        else:
            rest.append(p)
    out = []
    for s, ps in zip(specs, buckets, strict=True):
        if not ps:
            continue
        lr = s.lr if s.lr is not None else base_lr * float(s.lr_scale)
        group = {"params": ps, "lr": lr, "name": s.name}
        if s.weight_decay is not None:
            group["weight_decay"] = s.weight_decay
        out.append(group)
    if rest:
        out.append({"params": rest, "lr": base_lr, "name": "rest"})
    return out


def check_module_prefixes(model: nn.Module, prefixes: Sequence[str], where: str) -> None:
    """Raise ValueError naming ``where`` if a prefix matches no parameter of ``model``."""
    names = [n for n, _ in model.named_parameters()]
    for m in prefixes:
        if not any(module_prefix_matches(n, m) for n in names):
            raise ValueError(
                f"recipe key {where}: {m!r} matches no parameter of {type(model).__name__}; "
                f"its top-level modules: {_top_level(model)}"
            )


def set_frozen(
    model: nn.Module, prefixes: Sequence[str], trainable: dict[str, bool] | None = None
) -> dict[str, bool]:
    """Freeze the parameters under ``prefixes`` and unfreeze the others.

    Args:
        model: the network.
        prefixes: dotted module-name prefixes to freeze (empty: unfreeze everything).
        trainable: the parameters' ``requires_grad`` before any freezing (returned by the
            first call; pass it back so parameters that never trained stay frozen).

    Returns:
        ``trainable`` (name -> original ``requires_grad``).

    Raises:
        ValueError: a prefix that matches no parameter.
    """
    check_module_prefixes(model, prefixes, "freeze")
    if trainable is None:
        trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        frozen = any(module_prefix_matches(n, m) for m in prefixes)
        p.requires_grad_(trainable.get(n, True) and not frozen)
    return trainable


def frozen_batchnorms(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Module]:
    """BatchNorm layers under ``prefixes`` (to keep in eval mode while frozen)."""
    out = []
    for n, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and any(
            module_prefix_matches(n, p) for p in prefixes
        ):
            out.append(m)
    return out
