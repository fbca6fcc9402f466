"""Rebuild a joint network from the files this project writes: an exported ``model.pt`` or a
Lightning ``.ckpt``.

* ``model.pt`` (written by :func:`joint_perception.export.onnx_export.export_onnx`) holds
  ``{"architecture", "config", "state_dict"}``: the registry name, the constructor arguments
  (``JointModel.config()``) and the weights;
* a Lightning checkpoint holds ``state_dict`` (keys prefixed ``model.``) and
  ``hyper_parameters`` (``{"architecture", "model": {config}}``, see
  :mod:`joint_perception.training.lightning_module`).

Files are read with ``torch.load(weights_only=True)`` only
(:func:`joint_perception.weights_io.load_weights`): a file holding other pickled objects is
refused with :class:`~joint_perception.weights_io.UntrustedCheckpointError` (a ``ValueError``
naming the file), never loaded with ``weights_only=False``. Checkpoints written by older versions of
this project are migrated by :func:`migrate_state_dict` (the segmentation head was named
``segmentation``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from joint_perception.metadata import ModelMetadata, load_metadata
from joint_perception.models.base import JointModel
from joint_perception.models.registry import build_model
from joint_perception.weights_io import load_weights

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_PT",
    "CheckpointContext",
    "checkpoint_context",
    "load_torch_model",
    "load_checkpoint_model",
    "migrate_state_dict",
]

#: file name of the torch weights inside an export directory
MODEL_PT = "model.pt"


def migrate_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename tensors of checkpoints written before the task vocabulary was unified
    (``heads.seg.*`` -> ``heads.segmentation.*``); other keys pass unchanged."""
    return {
        (k.replace("heads.seg.", "heads.segmentation.", 1) if k.startswith("heads.seg.") else k): v
        for k, v in state.items()
    }


def load_torch_model(model_dir: str | Path) -> tuple[JointModel, ModelMetadata]:
    """Rebuild the exported torch module from ``model.pt`` (eval mode, CPU).

    Args:
        model_dir: export directory (or the ``model.pt`` inside it); ``metadata.json`` must be
            next to ``model.pt``.

    Raises:
        FileNotFoundError: no model.pt / metadata.json.
        ValueError: model.pt lacks ``architecture``/``config``/``state_dict`` or does not fit
            the rebuilt module, or (``weights_io.CheckpointError``) cannot be read or holds
            pickled objects (the message names the file).
    """
    p = Path(model_dir)
    pt = p if p.suffix == ".pt" else p / MODEL_PT
    if not pt.is_file():
        raise FileNotFoundError(f"torch model not found: {pt}")
    obj = load_weights(pt)
    if not isinstance(obj, dict) or not {"architecture", "config", "state_dict"} <= set(obj):
        raise ValueError(f"{pt}: expected a dict with 'architecture', 'config', 'state_dict'")
    model = _build_and_load(obj["architecture"], obj["config"], obj["state_dict"], pt)
    return model, load_metadata(pt.parent)


def _build_and_load(
    arch: str, config: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: Path
) -> JointModel:
    try:
        model = build_model(arch, **dict(config))
        model.load_state_dict(migrate_state_dict(state))
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{source}: cannot rebuild {arch!r}: {exc}") from exc
    return model.eval()


def _arch_and_config(hp: Mapping[str, Any], source: Path) -> tuple[str, dict[str, Any]]:
    """Architecture name and constructor config from Lightning ``hyper_parameters``.

    Accepted: ``{"architecture": name, "model": {config}}`` or ``{"model": {"architecture" |
    "name" | "arch": name, ...config}}`` (a nested ``"config"``/``"kwargs"`` dict also works).
    """
    model_cfg = hp.get("model")
    model_cfg = dict(model_cfg) if isinstance(model_cfg, Mapping) else {}
    arch = hp.get("architecture")
    for key in ("architecture", "name", "arch"):
        if key in model_cfg:
            arch = arch or model_cfg[key]
            model_cfg.pop(key)
    for key in ("config", "kwargs"):
        if isinstance(model_cfg.get(key), Mapping):
            model_cfg = {**model_cfg.pop(key), **model_cfg}
    if not isinstance(arch, str):
        raise ValueError(f"{source}: hyper_parameters name no architecture (keys {sorted(hp)})")
    return arch, model_cfg


def load_checkpoint_model(path: str | Path) -> JointModel:
    """Build a model from a Lightning checkpoint (``state_dict`` with ``model.`` prefix and
    ``hyper_parameters``) or from an exported ``model.pt``.

    Raises:
        FileNotFoundError: missing file. ValueError: unrecognised content (names the file);
        ``weights_io.UntrustedCheckpointError`` (a ValueError): the file holds pickled objects
        other than tensors and plain values (it is not loaded).
    """
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_PT
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    obj = load_weights(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a checkpoint dict")
    if {"architecture", "config", "state_dict"} <= set(obj):
        return _build_and_load(obj["architecture"], obj["config"], obj["state_dict"], path)
    if "state_dict" in obj and isinstance(obj.get("hyper_parameters"), Mapping):
        arch, config = _arch_and_config(obj["hyper_parameters"], path)
        state = {
            k.removeprefix("model."): v
            for k, v in obj["state_dict"].items()
            if k.startswith("model.")
        }
        if not state:
            raise ValueError(f"{path}: state_dict has no 'model.' entries")
        return _build_and_load(arch, config, state, path)
    raise ValueError(
        f"{path}: neither a model.pt (architecture/config/state_dict) nor a Lightning "
        f"checkpoint (state_dict + hyper_parameters); keys {sorted(obj)[:8]}"
    )


@dataclass(frozen=True)
class CheckpointContext:
    """What the files around a checkpoint say about how its network was trained.

    Attributes:
        input_size: (H, W) network input in pixels, or None when nothing says.
        canonical_focal: focal length in pixels at the network input that depth was trained
            for (``ModelMetadata.canonical_focal``), or None (no per-camera rescale).
        source: the file these were read from, or None.
    """

    input_size: tuple[int, int] | None = None
    canonical_focal: float | None = None
    source: Path | None = None


def checkpoint_context(path: str | Path) -> CheckpointContext:
    """Training facts of a checkpoint that its weights do not hold.

    * ``model.pt`` of an exported model directory (or the directory): its ``metadata.json``;
    * a Lightning ``.ckpt`` in ``<run_dir>/checkpoints/`` (or beside ``config.yaml``): the
      run's resolved ``config.yaml`` (``input_size``, ``data.canonical_focal``);
    * anything else: an empty context.

    A depth network trained with a canonical focal predicts depth for that focal (in pixels
    at its input, whatever the input size): exports and evaluations of the checkpoint must
    carry it, or the runtime cannot rescale depth for the actual camera.

    Raises:
        ValueError: a ``metadata.json`` or ``config.yaml`` that cannot be read (names it).
    """
    import yaml

    p = Path(path)
    model_dir = p if p.is_dir() else p.parent
    if (p.is_dir() or p.name == MODEL_PT) and (model_dir / "metadata.json").is_file():
        meta = load_metadata(model_dir)
        return CheckpointContext(
            (meta.input_height, meta.input_width), meta.canonical_focal, model_dir / "metadata.json"
        )
    for cand in (p.parent.parent / "config.yaml", p.parent / "config.yaml"):
        if cand.is_file():
            try:
                cfg = yaml.safe_load(cand.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ValueError(f"{cand}: not readable YAML ({exc})") from exc
            if not isinstance(cfg, Mapping):
                raise ValueError(f"{cand}: not a training config (a mapping)")
            size = cfg.get("input_size")
            focal = (cfg.get("data") or {}).get("canonical_focal")
            return CheckpointContext(
                (int(size[0]), int(size[1])) if size else None,
                float(focal) if focal else None,
                cand,
            )
    return CheckpointContext()
