"""Training recipes: a typed schema, YAML files in ``config/train/`` and dotted overrides.

The dataclasses below (:class:`RecipeConfig` and its sections) are the one source of the recipe
defaults; they are OmegaConf structured configs. :func:`load_config` reads a recipe YAML,
merges it over the schema, applies dotted command-line overrides
(``optim.lr=0.01 trainer.devices=4 data.train[0].length=100``) and returns the resolved
configuration as a plain ``dict`` (mappings merge key by key; lists such as ``data.train``
replace the default). ``${...}`` interpolations resolve. :func:`resolve_config` does the same for a ``dict`` built in
code (``training.train.run`` resolves whatever it is given), :func:`resolve_section` for one
section (the LightningModule and DataModule fill their defaults with it).

Every key is checked, at any depth, and an unknown one is refused with its full key path::

    unknown recipe key optim.lrr (did you mean optim.lr?); known: optim.optimizer, optim.lr, ...

Sections whose keys belong to another component are checked against that component:

* ``model``: ``name`` selects the registered network (``models.registry``); the other keys are
  its constructor's keyword arguments, plus ``init_from`` / ``init_strict``;
* ``data.train[i]`` / ``data.val[i]``: ``name`` selects the data set
  (``data.registry.dataset_options``); ``data.val[i]`` may carry a ``tag``, ``data.train[i]``
  the teacher pseudo-label keys (:data:`TEACHER_KEYS`);
* ``data.augment``: keyword arguments of ``data.transforms.build_transforms``;
* ``trainer``: the typed fields below plus any other ``lightning.Trainer`` argument;
* ``export.tensorrt``: ``BuildOptions`` fields, checked by the ``train`` command that uses them
  (``export.train_command``; training does not know the engine builder).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

__all__ = [
    "RecipeConfig",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "TrainerConfig",
    "CheckpointConfig",
    "ExportConfig",
    "RecipeError",
    "default_config",
    "load_config",
    "resolve_config",
    "resolve_section",
    "apply_overrides",
    "parse_override",
]


def _choices(*values: str) -> dict:
    """Field metadata: the allowed string values (checked by :func:`resolve_config`)."""
    return {"choices": values}


@dataclass
class ModelConfig:
    """``model``: which network to train and how to build it.

    Besides the fields below, every keyword argument of the registered class's constructor is
    accepted (e.g. ``num_classes``, ``max_depth``, ``width_mult`` for ``realtime``); its defaults
    are the constructor's.

    Attributes:
        name: registry name of the network (``models.registry.list_models()``).
        init_from: start from these weights instead of the backbone initialisation: an exported
            model directory (e.g. ``models/realtime``), its ``model.pt`` or a Lightning
            ``.ckpt`` of the same architecture. None = fresh initialisation.
        init_strict: refuse weights that do not fit (missing, unexpected, other shape); false
            keeps the tensors whose shape differs (e.g. another class count) fresh.
    """

    name: str = "realtime"
    init_from: str | None = None
    init_strict: bool = True


@dataclass
class DataConfig:
    """``data``: data sets, loaders and augmentation.

    Attributes:
        train: training data set specs, concatenated: ``{name: <data set>, <reader key>: ...,
            max_items: N, repeat: N}`` (``data.registry.build_dataset``), optionally with
            ``teacher_labels`` (a DeepLab PASCAL ``.tflite`` whose pseudo-labels are merged
            into the set's labels) and ``teacher_min_confidence`` (``training.datamodule.
            build_spec``). At least one to train.
        val: validation data set specs, one loader each; ``tag`` names the metrics
            (``val/<tag>/<metric>``; default ``<name><index>``). The first also logs ``val/*``.
        batch_size: training images per step and device.
        val_batch_size: validation batch size; None = ``batch_size``.
        num_workers: data loader worker processes per device (0 = load in the main process).
        augment: training augmentation, keyword arguments of
            ``data.transforms.build_transforms`` (``scale`` [min, max] zoom factors,
            ``scale_mode`` closer|zoom, ``flip``, ``rotation`` degrees, ``color_jitter``
            strength); missing keys take that function's defaults.
        canonical_focal: focal length in pixels (at the network input size) that depth is
            normalised to, for training on several cameras; None = metric depth as recorded.
        allow_missing_targets: tasks of the model that may lack ground truth in every training
            set (their loss is then zero: e.g. frozen segmentation / normals branches while
            fine-tuning depth on KITTI). Any other task without ground truth stops ``train``.
    """

    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    batch_size: int = 8
    val_batch_size: int | None = None
    num_workers: int = 2
    augment: dict[str, Any] = field(default_factory=dict)
    canonical_focal: float | None = None
    allow_missing_targets: list[str] = field(default_factory=list)


@dataclass
class OptimConfig:
    """``optim``: optimiser and learning-rate schedule (stepped every iteration).

    Attributes:
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr: base learning rate (models may scale it per parameter group, e.g. CI-Net's
            backbone x0.1).
        weight_decay: L2 penalty (sgd, adam) or decoupled weight decay (adamw).
        momentum: SGD momentum (sgd only).
        betas: Adam/AdamW (beta1, beta2).
        schedule: ``poly`` ``(1 - t/T)^poly_power``, ``cosine`` or ``constant`` multiplier of
            ``lr`` over the run's optimiser steps.
        poly_power: exponent of the ``poly`` schedule.
        warmup_steps: optimiser steps of linear warm-up from ``lr / warmup_steps`` (0 = none).
        em: EM alternation (SOSD-Net): one optimiser per side of ``model.em_groups()``, a depth
            step and a semantic step in turn; ``trainer.gradient_clip_val`` then clips manually
            and ``trainer.accumulate_grad_batches`` is ignored.
        groups: per-layer learning rates: ``[{modules: [prefix, ...], lr: x | lr_scale: s,
            name?, weight_decay?}, ...]`` by module-name prefix (``training.schedule``);
            empty = the model's ``param_groups`` (e.g. CI-Net backbone x0.1).
        schedule_per_stage: restart the ``poly``/``cosine`` decay in every stage over that
            stage's steps (default: one decay over the whole run).
    """

    optimizer: str = field(default="adamw", metadata=_choices("sgd", "adam", "adamw"))
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = field(default="poly", metadata=_choices("poly", "cosine", "constant"))
    poly_power: float = 0.9
    warmup_steps: int = 0
    em: bool = False
    groups: list[dict[str, Any]] = field(default_factory=list)
    schedule_per_stage: bool = False


@dataclass
class TrainerConfig:
    """``trainer``: ``lightning.Trainer`` arguments; any other ``Trainer`` argument is accepted
    too (``max_time``, ``num_sanity_val_steps``, ``limit_train_batches``, ...) except those the
    ``train`` command sets itself (``callbacks``, ``logger``, ``plugins``, ``default_root_dir``).

    Attributes:
        accelerator: ``auto``, ``cpu``, ``gpu``, ``cuda``, ``mps``, ...
        devices: devices per node: a count, a list of indices or ``auto``.
        num_nodes: machines (multi-node DDP through SLURM or torchrun).
        strategy: ``auto``, ``ddp``, ``ddp_spawn``, ``fsdp``, ...
        precision: ``32-true``, ``16-mixed``, ``bf16-mixed``, ...
        max_epochs: stop after this many epochs.
        max_steps: stop after this many optimiser steps (-1 = no limit).
        check_val_every_n_epoch: validate every N epochs.
        log_every_n_steps: logging interval in training steps.
        gradient_clip_val: clip the gradient norm to this value; None = no clipping.
        accumulate_grad_batches: batches per optimiser step.
        enable_progress_bar: show Lightning's progress bar; None = only when stderr is a
            terminal (otherwise one log line per ``log_every_n_steps``:
            :class:`joint_perception.training.progress.LogProgress`).
        deterministic: ``true`` / ``false`` / ``warn``: deterministic algorithms only.
    """

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_epochs: int = 10
    max_steps: int = -1
    check_val_every_n_epoch: int | None = 1
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = 1
    enable_progress_bar: bool | None = None
    deterministic: Any = False


@dataclass
class CheckpointConfig:
    """``checkpoint``: what is saved under ``run_dir/checkpoints``.

    Attributes:
        monitor: logged metric that picks ``best-*.ckpt`` (e.g. ``val/abs_rel``,
            ``val/<tag>/miou``); None = no best checkpoint (the export uses the final weights).
        mode: ``min`` or ``max``: whether a lower or a higher ``monitor`` is better.
        every_n_train_steps: optimiser steps between two saves of ``last.ckpt`` (also saved at
            each epoch end); 0 or None = at epoch ends only.
    """

    monitor: str | None = "val/abs_rel"
    mode: str = field(default="min", metadata=_choices("min", "max"))
    every_n_train_steps: int | None = 50


@dataclass
class ExportConfig:
    """``export``: what is exported to ``run_dir/export`` after training.

    Attributes:
        enabled: export the best checkpoint (else the final weights) to ONNX + model.pt +
            metadata.json.
        input_size: [H, W] in pixels of the exported network input; None = ``input_size``.
        opset: ONNX opset version.
        verify_atol: largest tolerated |ONNX Runtime - PyTorch| on the float outputs (fp32);
            a larger gap fails the export (the checkpoint is kept, ``train`` exits with 1).
        tensorrt: ``BuildOptions`` fields for the TensorRT engine, built when ``tensorrt``
            imports (``precision`` fp32|fp16|int8, ``workspace_mb``, ...); missing fields take
            ``BuildOptions``' defaults.
    """

    enabled: bool = True
    input_size: list[int] | None = None
    opset: int = 17
    verify_atol: float = 1e-4
    tensorrt: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecipeConfig:
    """A training recipe (``config/train/*.yaml``).

    Attributes:
        seed: seeds Python, NumPy, torch and the data loader workers.
        run_dir: output directory (``checkpoints/``, ``logs/``, ``export/``, ``config.yaml``).
        input_size: [H, W] network input in pixels (training crops and validation resize).
        model: see :class:`ModelConfig`.
        data: see :class:`DataConfig`.
        optim: see :class:`OptimConfig`.
        stages: training stages in order, each a number of epochs or a mapping ``{epochs,
            name?, model_stage?, lr?, freeze?: [module prefixes]}`` (``training.schedule``):
            ``model.set_stage(model_stage or 1..k)`` at the boundaries, the stage's base LR,
            frozen modules; after the last boundary the last stage stays; empty = stage 0
            throughout.
        trainer: see :class:`TrainerConfig`.
        checkpoint: see :class:`CheckpointConfig`.
        export: see :class:`ExportConfig`.
        recipe: path of the recipe file, set by :func:`load_config` (recorded in
            ``run_dir/config.yaml`` and the export metadata); not meant to be written by hand.
    """

    seed: int = 42
    run_dir: str = "runs/default"
    input_size: list[int] = field(default_factory=lambda: [240, 320])
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stages: list[Any] = field(default_factory=list)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    recipe: str | None = None


#: sections whose dataclass fields are not the only keys (checked by _check_* below)
_OPEN_SECTIONS = ("model", "trainer")
#: Trainer arguments the ``train`` command passes itself
_MANAGED_TRAINER_KEYS = ("callbacks", "logger", "plugins", "default_root_dir")
#: build_transforms arguments that are not augmentation options
_NOT_AUGMENT = ("size", "train", "canonical_focal", "mean", "std")


#: data set spec keys the training data module handles itself (not the reader): semantic
#: pseudo-labels from a teacher network (``training.pseudo_labels``)
TEACHER_KEYS = ("teacher_labels", "teacher_min_confidence")


class RecipeError(ValueError):
    """An invalid recipe value or key.

    Attributes:
        key: full key path of the offending entry (``optim.lrr``, ``data.train[1].rooot``).
    """

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


# --------------------------------------------------------------------------- schema helpers
def _schema() -> DictConfig:
    cfg = OmegaConf.structured(RecipeConfig)
    for name in _OPEN_SECTIONS:  # typed fields plus keys checked against their component
        OmegaConf.set_struct(cfg[name], False)
    return cfg


def default_config() -> dict[str, Any]:
    """The defaults of every recipe key, as a plain ``dict``."""
    return OmegaConf.to_container(_schema(), resolve=True)


def _section_type(path: str) -> type | None:
    """The dataclass at ``path`` ("" = the root), or None."""
    t: Any = RecipeConfig
    for part in [p for p in path.split(".") if p]:
        fields = {f.name: f for f in dataclasses.fields(t)} if dataclasses.is_dataclass(t) else {}
        if part not in fields:
            return None
        t = (
            fields[part].default_factory
            if fields[part].default_factory is not dataclasses.MISSING
            else None
        )
    return t if dataclasses.is_dataclass(t) else None


def _leaf(key: str) -> str:
    return re.split(r"[.\[]", key)[-1]


def _unknown(key: str, known: Iterable[str], what: str = "") -> RecipeError:
    known = list(known)
    by_leaf = {_leaf(k): k for k in known}
    close = difflib.get_close_matches(_leaf(key), list(by_leaf), n=1, cutoff=0.75)
    hint = f" (did you mean {by_leaf[close[0]]}?)" if close else ""
    return RecipeError(key, f"unknown recipe key {key}{what}{hint}; known: {', '.join(known)}")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _translate(exc: OmegaConfBaseException) -> RecipeError:
    """An OmegaConf error as a :class:`RecipeError` naming the key path."""
    key = str(getattr(exc, "full_key", "") or "")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, (ConfigKeyError, AttributeError)) and "not in" in first:
        parent = key.rsplit(".", 1)[0] if "." in key else ""
        section = _section_type(parent)
        if section is not None:
            return _unknown(key, [_join(parent, f.name) for f in dataclasses.fields(section)])
        return RecipeError(key, f"unknown recipe key {key}")
    first = re.sub(r"\s*Did you mean.*$", "", first)
    return RecipeError(key, f"recipe key {key}: {first}" if key else first)


def _shape_problem(schema: Any, user: Any, prefix: str = "") -> RecipeError | None:
    """The first place where ``user`` puts a scalar or list where the schema has a mapping, or
    a scalar or mapping where it has a list (OmegaConf's own messages lack the key path)."""
    if user is None:
        return None
    if isinstance(schema, DictConfig):
        if not isinstance(user, Mapping):
            return RecipeError(prefix, f"recipe key {prefix}: expected a mapping, got {user!r}")
        for k, v in user.items():
            if k in schema:
                problem = _shape_problem(schema[k], v, _join(prefix, str(k)))
                if problem is not None:
                    return problem
    elif isinstance(schema, ListConfig) and (
        isinstance(user, (str, Mapping)) or not isinstance(user, Sequence)
    ):
        return RecipeError(prefix, f"recipe key {prefix}: expected a list, got {user!r}")
    return None


def _merge(base: DictConfig, update: Any) -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except (OmegaConfBaseException, TypeError, ValueError) as exc:
        problem = _shape_problem(base, update)
        if problem is not None:
            raise problem from None
        if isinstance(exc, OmegaConfBaseException):
            raise _translate(exc) from None
        raise RecipeError("", str(exc)) from None


# --------------------------------------------------------------------------- semantic checks
def check_keys(prefix: str, given: Mapping, known: Sequence[str], what: str = "") -> None:
    """Refuse any key of ``given`` not in ``known``.

    Raises:
        RecipeError: naming the full key path and, when close, the key meant.
    """
    for k in given:
        if k not in known:
            raise _unknown(_join(prefix, str(k)), [_join(prefix, n) for n in known], what)


def _check_choices(prefix: str, section: type, values: Mapping) -> None:
    for f in dataclasses.fields(section):
        choices = f.metadata.get("choices")
        if choices and values.get(f.name) not in choices:
            raise RecipeError(
                _join(prefix, f.name),
                f"recipe key {_join(prefix, f.name)}: {values.get(f.name)!r} is not one of {', '.join(choices)}",
            )


def _check_size(key: str, value: Any) -> None:
    if value is None and key != "input_size":
        return
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise RecipeError(
            key, f"recipe key {key}: expected [height, width] in pixels, got {value!r}"
        )


def _check_model(model: Mapping) -> None:
    from joint_perception.models.registry import list_models, model_class

    name = model.get("name")
    try:
        cls = model_class(str(name))
    except KeyError:
        raise RecipeError(
            "model.name",
            f"recipe key model.name: unknown model {name!r}; known: {', '.join(list_models())}",
        ) from None
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    kwargs = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    own = [f.name for f in dataclasses.fields(ModelConfig)]
    check_keys("model", model, own + kwargs, f" for model {name!r}")


def _check_datasets(split: str, specs: Sequence[Mapping]) -> None:
    from joint_perception.data.registry import DATASETS, dataset_options

    for i, spec in enumerate(specs):
        prefix = f"data.{split}[{i}]"
        name = spec.get("name")
        if name is None:
            raise RecipeError(
                f"{prefix}.name",
                f"recipe key {prefix}.name: missing (a data set spec names its reader: {', '.join(DATASETS)})",
            )
        if name not in DATASETS:
            raise RecipeError(
                f"{prefix}.name",
                f"recipe key {prefix}.name: unknown data set {name!r}; known: {', '.join(DATASETS)}",
            )
        # val specs may name their metrics; train specs may add teacher pseudo-labels
        extra = ["tag"] if split == "val" else list(TEACHER_KEYS)
        known = ["name", *extra, *dataset_options(name)]
        check_keys(prefix, spec, known, f" for data set {name!r}")


def _check_augment(augment: Mapping) -> None:
    from joint_perception.data.transforms import build_transforms

    known = [n for n in inspect.signature(build_transforms).parameters if n not in _NOT_AUGMENT]
    check_keys("data.augment", augment, known)


def _check_trainer(trainer: Mapping) -> None:
    from lightning.pytorch import Trainer

    known = [n for n in inspect.signature(Trainer.__init__).parameters if n != "self"]
    for k in trainer:
        if k in _MANAGED_TRAINER_KEYS:
            raise RecipeError(
                f"trainer.{k}", f"recipe key trainer.{k}: set by the train command, not by a recipe"
            )
    check_keys(
        "trainer",
        trainer,
        [n for n in known if n not in _MANAGED_TRAINER_KEYS],
        " for lightning.Trainer",
    )


def _check_data(data: Mapping[str, Any]) -> None:
    from joint_perception.tasks import TASK_NAMES

    _check_datasets("train", data["train"])
    _check_datasets("val", data["val"])
    _check_augment(data["augment"])
    for t in data["allow_missing_targets"]:
        if t not in TASK_NAMES:
            raise RecipeError(
                "data.allow_missing_targets",
                f"recipe key data.allow_missing_targets: {t!r} is not a task "
                f"({', '.join(TASK_NAMES)})",
            )


def _check_stages(stages: Sequence[Any]) -> None:
    from joint_perception.training.schedule import normalise_stages

    try:
        normalise_stages(stages)
    except ValueError as exc:
        key = re.match(r"recipe key (\S+?):", str(exc))
        raise RecipeError(key.group(1) if key else "stages", str(exc)) from None


def _check_optim(optim: Mapping[str, Any]) -> None:
    from joint_perception.training.schedule import GROUP_KEYS

    _check_choices("optim", OptimConfig, optim)
    for i, g in enumerate(optim["groups"]):
        if not isinstance(g, Mapping):
            raise RecipeError(
                f"optim.groups[{i}]", f"recipe key optim.groups[{i}]: expected a mapping, got {g!r}"
            )
        check_keys(f"optim.groups[{i}]", g, GROUP_KEYS)
        if not g.get("modules"):
            raise RecipeError(
                f"optim.groups[{i}].modules",
                f"recipe key optim.groups[{i}].modules: list at least one module prefix",
            )
        if (g.get("lr") is None) == (g.get("lr_scale") is None):
            raise RecipeError(
                f"optim.groups[{i}]",
                f"recipe key optim.groups[{i}]: set exactly one of lr and lr_scale",
            )


def _check_export(export: Mapping[str, Any]) -> None:
    _check_size("export.input_size", export["input_size"])


#: numeric values and their lower bound (value, True = the bound itself is allowed); None
#: values pass (the schema says which may be None). Every float must also be finite.
_LOWER_BOUNDS = {
    "data": {
        "batch_size": (1, True),
        "val_batch_size": (1, True),
        "num_workers": (0, True),
        "canonical_focal": (0, False),
    },
    "optim": {
        "lr": (0, False),
        "weight_decay": (0, True),
        "momentum": (0, True),
        "poly_power": (0, False),
        "warmup_steps": (0, True),
    },
    "trainer": {
        "num_nodes": (1, True),
        "log_every_n_steps": (1, True),
        "accumulate_grad_batches": (1, True),
        "gradient_clip_val": (0, True),
    },
    "checkpoint": {"every_n_train_steps": (0, True)},
    "export": {"verify_atol": (0, False)},
}


def _check_numbers(section: str, values: Mapping[str, Any]) -> None:
    """Finite floats and the lower bounds of :data:`_LOWER_BOUNDS` (Lightning or torch
    would refuse them only after the run directory's records were written)."""
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RecipeError(
                f"{section}.{key}", f"recipe key {section}.{key}: must be finite, got {value}"
            )
        bound = _LOWER_BOUNDS.get(section, {}).get(key)
        if bound is None or value is None or isinstance(value, bool):
            continue
        low, inclusive = bound
        if value < low or (value == low and not inclusive):
            relation = ">=" if inclusive else ">"
            raise RecipeError(
                f"{section}.{key}",
                f"recipe key {section}.{key}: must be {relation} {low}, got {value}",
            )


def _checked(section: str, check):
    def run(values):
        check(values)
        if isinstance(values, Mapping):
            _check_numbers(section, values)

    return run


#: per section, the checks the schema types cannot express (OmegaConf already refused unknown
#: keys and badly typed values of the typed sections)
_CHECKS = {
    "input_size": lambda v: _check_size("input_size", v),
    "model": _check_model,
    "data": _checked("data", _check_data),
    "optim": _checked("optim", _check_optim),
    "stages": _check_stages,
    "trainer": _checked("trainer", _check_trainer),
    "checkpoint": _checked(
        "checkpoint", lambda v: _check_choices("checkpoint", CheckpointConfig, v)
    ),
    "export": _checked("export", _check_export),
}


# --------------------------------------------------------------------------- public API
def _resolve(cfg: Mapping[str, Any] | DictConfig, sections: Iterable[str]) -> dict[str, Any]:
    merged = _merge(_schema(), cfg)
    try:
        out = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as exc:  # e.g. a ${...} interpolation to a missing key
        raise _translate(exc) from None
    for name in sections:
        if name in _CHECKS:
            _CHECKS[name](out[name])
    return out


def resolve_config(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """Merge ``cfg`` over the schema defaults, check every key and value, return a plain dict.

    Idempotent: a resolved configuration resolves to itself.

    Raises:
        RecipeError: unknown key (full key path and the known keys), wrong type, value not
            among the choices, unknown model or data set name.
    """
    return _resolve(cfg, _CHECKS)


def resolve_section(name: str, values: Any = None) -> Any:
    """One section (``optim``, ``data``, ...) merged over its defaults and checked as in a
    recipe (key paths start with ``name``); the LightningModule and DataModule take their
    defaults from here.

    Raises:
        RecipeError: as :func:`resolve_config`. KeyError: ``name`` is not a section.
    """
    if name not in _CHECKS:
        raise KeyError(f"no recipe section {name!r}; known: {', '.join(_CHECKS)}")
    return _resolve({} if values is None else {name: values}, [name])[name]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> (["optim", "lr"], 0.001); ``"data.train[0].length=5"`` ->
    (["data", "train", "0", "length"], 5). The value is parsed as YAML (``null``, ``true``,
    ``[1, 2]``, numbers, ``1e-3`` too; anything else stays a string).

    Raises:
        ValueError: no ``=`` or an empty key.
    """
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    key, value = (s.strip() for s in text.split("=", 1))
    parts = re.sub(r"\[(\d+)\]", r".\1", key).split(".")
    if not key or any(not p for p in parts):
        raise ValueError(f"override {text!r} has an empty key")
    try:
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={value}"]))["v"]
    except OmegaConfBaseException:
        parsed = value
    return parts, parsed


def _override_key(parts: Sequence[str]) -> str:
    """Key path as the error messages write it: ``data.train[0].length``."""
    out = ""
    for p in parts:
        out = out + f"[{p}]" if p.isdigit() else _join(out, p)
    return out


def _apply(cfg: DictConfig, overrides: Sequence[str]) -> None:
    for text in overrides:
        key = _override_key(parse_override(text)[0])  # syntax errors first
        try:
            cfg.merge_with_dotlist([text])
        except OmegaConfBaseException as exc:
            err = _translate(exc)
            # some OmegaConf messages lack the key path: the override has it
            message = str(err) if err.key else f"recipe key {key}: {err}"
            raise ValueError(f"override {text!r}: {message}") from None


def _blame(exc: RecipeError, path: Path | None, overrides: Sequence[str]) -> str:
    """Prefix ``exc`` with the override that set its key, else the recipe file."""
    for text in reversed(overrides):
        key = _override_key(parse_override(text)[0])
        if exc.key == key or exc.key.startswith((key + ".", key + "[")):
            return f"override {text!r}: {exc}"
    return f"{path}: {exc}" if path is not None else str(exc)


def apply_overrides(cfg: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to ``cfg``; returns the resolved configuration.

    Raises:
        ValueError: a malformed override, or a :class:`RecipeError` message prefixed with the
            override that caused it.
    """
    merged = _merge(_schema(), cfg)
    _apply(merged, overrides)
    try:
        return resolve_config(merged)
    except RecipeError as exc:
        raise ValueError(_blame(exc, None, overrides)) from None


def _read_recipe(path: Path) -> DictConfig:
    if not path.exists():
        raise FileNotFoundError(f"training recipe not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path}: a training recipe is a YAML file, not a directory")
    try:
        # OmegaConf's YAML loader also reads 1e-3 (no dot) as a float, unlike YAML 1.1
        user = OmegaConf.load(path)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML in {path}: {exc}") from exc
    if user is None or (isinstance(user, DictConfig) and not user):
        return OmegaConf.create({})
    if not isinstance(user, DictConfig):
        raise ValueError(
            f"{path}: a recipe must be a mapping, got {type(OmegaConf.to_container(user)).__name__}"
        )
    return user


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a recipe, merge it over the schema defaults and apply ``overrides``.

    Args:
        path: YAML file (None = defaults only).
        overrides: ``key.sub=value`` strings (``data.train[0].length=5`` indexes lists).

    Returns:
        The full configuration as a plain dict; ``cfg["recipe"]`` records the file path.

    Raises:
        FileNotFoundError: missing file.
        ValueError: invalid YAML, a non-mapping document, an unknown key at any depth, a wrong
            type or value; the message names the file or the override and the full key path.
    """
    path = None if path is None else Path(path)
    merged = _schema()
    if path is not None:
        try:
            merged = _merge(merged, _read_recipe(path))
        except RecipeError as exc:
            raise ValueError(f"{path}: {exc}") from None
    _apply(merged, overrides)
    merged.recipe = None if path is None else str(path)
    try:
        return resolve_config(merged)
    except RecipeError as exc:
        raise ValueError(_blame(exc, path, overrides)) from None
