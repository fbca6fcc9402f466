"""Training recipes: YAML files in ``config/train/`` merged over defaults, with dotted
command-line overrides (``optim.lr=0.01 trainer.devices=4 data.batch_size=16``).

A recipe has these sections (every key optional; see :data:`DEFAULTS` and the recipes):

* ``seed``, ``run_dir`` (outputs: checkpoints/, logs/, export/), ``input_size`` [H, W];
* ``model``: ``name`` (registry) + constructor keyword arguments;
* ``data``: ``train`` / ``val`` lists of data set specs (``data.registry.build_dataset``;
  a val spec may carry ``tag``), ``batch_size``, ``val_batch_size``, ``num_workers``,
  ``augment`` (``data.transforms.build_transforms`` options), ``canonical_focal``;
* ``optim``: ``optimizer`` sgd|adam|adamw, ``lr``, ``weight_decay``, ``momentum``,
  ``schedule`` poly|cosine|constant, ``poly_power``, ``warmup_steps``, ``em`` (EM alternation);
* ``stages``: epochs per training stage (``model.set_stage(1..k)``; empty = stage 0);
* ``trainer``: Lightning ``Trainer`` arguments (accelerator, devices, num_nodes, strategy,
  precision, max_epochs, max_steps, check_val_every_n_epoch, ...);
* ``checkpoint``: ``monitor``, ``mode``, ``every_n_train_steps`` (for ``last.ckpt``);
* ``export``: ``enabled``, ``input_size``, ``opset``, ``tensorrt`` (``BuildOptions`` fields).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULTS", "load_config", "apply_overrides", "deep_merge", "parse_override"]

DEFAULTS: dict[str, Any] = {
    "seed": 42,
    "run_dir": "runs/default",
    "input_size": [240, 320],
    "model": {"name": "realtime"},
    "data": {
        "train": [],
        "val": [],
        "batch_size": 8,
        "val_batch_size": None,
        "num_workers": 2,
        "augment": {},
        "canonical_focal": None,
    },
    "optim": {
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "momentum": 0.9,
        "betas": [0.9, 0.999],
        "schedule": "poly",
        "poly_power": 0.9,
        "warmup_steps": 0,
        "em": False,
    },
    "stages": [],
    "trainer": {
        "accelerator": "auto",
        "devices": "auto",
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "max_epochs": 10,
        "max_steps": -1,
        "check_val_every_n_epoch": 1,
        "log_every_n_steps": 10,
        "gradient_clip_val": None,
        "accumulate_grad_batches": 1,
        "enable_progress_bar": True,
        "deterministic": False,
    },
    "checkpoint": {"monitor": "val/abs_rel", "mode": "min", "every_n_train_steps": 50},
    "export": {"enabled": True, "input_size": None, "opset": 17, "tensorrt": {"precision": "fp16"}},
}

SECTIONS = tuple(DEFAULTS)


def deep_merge(base: Mapping, update: Mapping) -> dict:
    """Recursively merge ``update`` into a copy of ``base`` (lists and scalars replace)."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-3"`` -> (["optim", "lr"], 0.001); the value is parsed as YAML
    (``null``, ``true``, ``[1, 2]``, numbers; anything else stays a string).

    Raises:
        ValueError: no ``=`` or an empty key.
    """
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key.sub=value")
    key, value = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ValueError(f"override {text!r} has an empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return parts, _fix_floats(parsed)


def apply_overrides(cfg: Mapping, overrides: Sequence[str]) -> dict:
    """Apply dotted ``key=value`` overrides to a copy of ``cfg``.

    Raises:
        ValueError: an override names an unknown top-level section, or indexes into a value
            that is not a mapping.
    """
    out = copy.deepcopy(dict(cfg))
    for text in overrides:
        parts, value = parse_override(text)
        if parts[0] not in SECTIONS:
            raise ValueError(f"override {text!r}: unknown section {parts[0]!r}; known: {', '.join(SECTIONS)}")
        node = out
        for p in parts[:-1]:
            if p not in node or node[p] is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ValueError(f"override {text!r}: {p!r} is not a mapping")
            node = node[p]
        node[parts[-1]] = value
    return out


def _fix_floats(node):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; convert numeric-looking strings."""
    if isinstance(node, dict):
        return {k: _fix_floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_fix_floats(v) for v in node]
    if isinstance(node, str):
        try:
            return float(node) if node.strip() and node.lower()[0] in "0123456789.-+" and "e" in node.lower() else node
        except ValueError:
            return node
    return node


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> dict:
    """Read a recipe, merge it over :data:`DEFAULTS` and apply ``overrides``.

    Args:
        path: YAML file (None = defaults only).
        overrides: ``key.sub=value`` strings.

    Returns:
        The full configuration dict; ``cfg["recipe"]`` records the file path.

    Raises:
        FileNotFoundError: missing file. ValueError: invalid YAML, a non-mapping document or an
        unknown top-level section (all name the file).
    """
    user: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"training recipe not found: {path}")
        try:
            user = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"invalid YAML in {path}: {exc}") from exc
        if not isinstance(user, dict):
            raise ValueError(f"{path}: a recipe must be a mapping, got {type(user).__name__}")
        unknown = set(user) - set(SECTIONS)
        if unknown:
            raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    cfg = deep_merge(DEFAULTS, _fix_floats(user))
    cfg = apply_overrides(cfg, overrides)
    cfg["recipe"] = None if path is None else str(path)
    return cfg
