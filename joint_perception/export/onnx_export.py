"""Export a :class:`~joint_perception.models.base.JointModel` to the project's ONNX contract.

:class:`~joint_perception.models.deploy.DeployWrapper` turns any joint network into the graph
that every backend runs
(``metadata.py`` docstring, docs/architecture.md): input ``image`` (N, 3, H, W) float32 RGB in
[0, 1], normalisation inside; outputs, in this order and only for the model's tasks,
``depth`` (N,1,H,W) float32 metres, ``labels`` (N,H,W) int32 (argmax + 1; 0 is void and never
predicted), ``confidence`` (N,H,W) float32 max softmax probability, ``normals`` (N,3,H,W)
float32 unit vectors (camera optical frame, REP 103).

:func:`export_onnx` writes one directory as a whole: the files are written into a temporary
sibling (``.<dir>.<pid>.<random>.tmp``) that then replaces the directory in one step
(:func:`joint_perception.io_utils.atomic_directory`), so a ``kill -9`` at any point leaves the
previous export or the complete new one, never a mix; temporaries of killed exports are
removed at the next start. An existing directory that is not an export (no ``metadata.json``)
and not empty is refused rather than replaced. The directory holds:

* ``model.onnx`` — static shapes, opset 17 by default, checked by ``onnx.checker`` and run
  through ONNX Runtime against PyTorch on a seeded random input (max abs difference recorded
  in ``metadata.extra["onnx_check"]``; above ``verify_atol`` the export fails and the
  previous directory stays).
* ``model.pt`` — ``{"architecture", "config", "state_dict"}``, from which
  :func:`joint_perception.models.serialization.load_torch_model` (and the torch backend)
  rebuild the module.
* ``metadata.json`` — :class:`~joint_perception.metadata.ModelMetadata` with the ONNX SHA-256,
  classes and palette, input size, mean/std, depth range and the git revision.

Console script ``export_onnx --checkpoint CKPT_OR_MODEL_PT --out DIR [--height H --width W
--opset N]`` accepts a Lightning checkpoint or a ``model.pt``; both are read with
``weights_only=True`` only (a file with other pickled objects is refused with a message naming it, exit status 1).
The input size (unless given) and the canonical focal come from the files around the
checkpoint (:func:`joint_perception.models.serialization.checkpoint_context`).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from joint_perception.io_utils import (
    atomic_directory,
    atomic_open,
    atomic_write_bytes,
    remove_stale_temps,
    sha256_file,
)
from joint_perception.metadata import ModelMetadata
from joint_perception.models.base import JointModel
from joint_perception.models.deploy import DeployWrapper
from joint_perception.models.serialization import (
    MODEL_PT,
    checkpoint_context,
    load_checkpoint_model,
)
from joint_perception.nyuv2_classes import default_class_names

log = logging.getLogger(__name__)


def git_revision(path: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the repository containing ``path`` (default: this package),
    with ``-dirty`` when tracked files are modified; None outside a git checkout."""
    cwd = Path(path) if path else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def _palette(num_classes: int) -> list[list[int]]:
    try:
        from joint_perception.colormap import label_palette
    except ImportError as exc:  # colormap is another module's; keep export usable without it
        log.warning("no class colours in metadata: %s", exc)
        return []
    return np.asarray(label_palette(num_classes), dtype=np.uint8).tolist()


def _export_bytes(wrapper: DeployWrapper, example: torch.Tensor, opset: int) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # TracerWarnings about Python ints are intended: shapes are static by contract.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            buf,
            input_names=["image"],
            output_names=wrapper.output_names,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


def compare_with_onnxruntime(
    wrapper: DeployWrapper, onnx_path: str | Path, example: torch.Tensor
) -> dict[str, Any]:
    """Run ``example`` through PyTorch and ONNX Runtime (CPU) and compare.

    Returns:
        ``{"max_abs_diff": {output: float} for float outputs, "label_agreement": fraction of
        equal labels (argmax ties may flip), "onnxruntime": version}``.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = dict(
        zip(wrapper.output_names, sess.run(wrapper.output_names, {"image": example.numpy()}))
    )
    with torch.no_grad():
        ref = dict(zip(wrapper.output_names, (t.numpy() for t in wrapper(example))))
    report: dict[str, Any] = {"max_abs_diff": {}, "onnxruntime": ort.__version__}
    for name, r in ref.items():
        g = got[name]
        if g.shape != r.shape or g.dtype != r.dtype:
            raise RuntimeError(
                f"ONNX output {name!r} is {g.dtype}{g.shape}, torch gives {r.dtype}{r.shape}"
            )
        if name == "labels":
            report["label_agreement"] = float(np.mean(g == r))
        else:
            report["max_abs_diff"][name] = float(np.max(np.abs(g.astype(np.float64) - r)))
    return report


def export_onnx(
    model: JointModel,
    out_dir: str | Path,
    input_size: Sequence[int] = (240, 320),
    opset: int = 17,
    metadata_overrides: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    verify_atol: float = 1e-3,
) -> tuple[Path, ModelMetadata]:
    """Export ``model`` to ``out_dir`` (``model.onnx``, ``model.pt``, ``metadata.json``).

    Args:
        model: the network (any :class:`JointModel`; put in eval mode for the export and
            restored afterwards).
        out_dir: directory, created if missing; an existing export directory is replaced as
            a whole, atomically (its other files, e.g. engines of the old graph, go with it).
        input_size: (H, W) static network input in pixels.
        opset: ONNX opset (17 is the project's contract).
        metadata_overrides: :class:`ModelMetadata` fields to set (``canonical_focal``,
            ``min_depth``, ``training``...); the dicts ``training``/``metrics``/``extra`` are
            merged into the generated ones.
        class_names: names of classes 1..C; default NYUv2 40/13 names by class count.
        verify_atol: largest tolerated |ORT - PyTorch| on float outputs.

    Returns:
        (path of model.onnx, the metadata written).

    Raises:
        ValueError: bad input size, class names that do not match the model, unknown
            override fields, ``out_dir`` is a non-empty directory that is not an export.
        RuntimeError: ONNX Runtime disagrees with PyTorch beyond ``verify_atol``.
        onnx.checker.ValidationError: invalid graph.
    """
    h, w = (int(s) for s in input_size)
    if h <= 0 or w <= 0:
        raise ValueError(f"input_size must be positive (H, W), got {tuple(input_size)}")
    out_dir = Path(out_dir)
    tasks = list(model.tasks)
    names: list[str] = []
    if "segmentation" in tasks:
        names = (
            list(class_names) if class_names is not None else default_class_names(model.num_classes)
        )
        if len(names) != model.num_classes:
            raise ValueError(
                f"{len(names)} class names for a model with {model.num_classes} classes"
            )

    _check_override_fields(metadata_overrides or {})
    _check_replaceable(out_dir)
    remove_stale_temps(out_dir.parent, out_dir.name)
    with atomic_directory(out_dir) as tmp_dir:
        meta, worst = _write_export(
            model, tmp_dir, h, w, opset, tasks, names, metadata_overrides, verify_atol
        )
    onnx_path = out_dir / meta.onnx_file
    log.info(
        "exported %s (%s, %dx%d, opset %d, max |ORT-torch| %.2g)",
        onnx_path,
        model.arch,
        h,
        w,
        opset,
        worst,
    )
    return onnx_path, meta


def _check_replaceable(out_dir: Path) -> None:
    """Refuse to replace a non-empty directory that is not a model export."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "metadata.json").is_file():
        raise ValueError(
            f"{out_dir} is a non-empty directory without metadata.json (not a model export): "
            "refusing to replace it; choose an empty or new directory"
        )


def _write_export(
    model: JointModel,
    out_dir: Path,
    h: int,
    w: int,
    opset: int,
    tasks: list[str],
    names: list[str],
    metadata_overrides: Mapping[str, Any] | None,
    verify_atol: float,
) -> tuple[ModelMetadata, float]:
    """Write model.onnx, model.pt and metadata.json into ``out_dir`` (the temporary directory
    :func:`export_onnx` swaps in); returns the metadata and the worst |ORT - torch|."""
    import onnx

    was_training = model.training
    model.eval()
    try:
        wrapper = DeployWrapper(model).eval()
        onnx_bytes = _export_bytes(wrapper, torch.zeros(1, 3, h, w), opset)
        onnx.checker.check_model(onnx.load_from_string(onnx_bytes), full_check=True)
        onnx_path = atomic_write_bytes(out_dir / "model.onnx", onnx_bytes)
        example = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
        check = compare_with_onnxruntime(wrapper, onnx_path, example)
    finally:
        model.train(was_training)
    worst = max(check["max_abs_diff"].values(), default=0.0)
    if worst > verify_atol:
        raise RuntimeError(
            f"{onnx_path.name}: ONNX Runtime differs from PyTorch by {worst:.3g} > "
            f"{verify_atol:g} ({check['max_abs_diff']})"
        )
    with atomic_open(out_dir / MODEL_PT, "wb") as f:
        torch.save(
            {
                "architecture": model.arch,
                "config": model.config(),
                "state_dict": model.state_dict(),
            },
            f,
        )

    meta = ModelMetadata(
        architecture=model.arch,
        tasks=tasks,
        input_height=h,
        input_width=w,
        mean=[float(v) for v in model.mean],
        std=[float(v) for v in model.std],
        class_names=names,
        class_colors=_palette(len(names)) if names else [],
        max_depth=float(model.max_depth),
        onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        onnx_opset=int(opset),
        inputs=["image"],
        outputs=list(wrapper.output_names),
        training={"git_revision": git_revision()},
        extra={
            "config": model.config(),
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "torch_version": torch.__version__,
            "onnx_check": check,
        },
    )
    meta = apply_overrides(meta, metadata_overrides or {})
    meta.save(out_dir / "metadata.json")
    return meta, worst


def apply_overrides(meta: ModelMetadata, overrides: Mapping[str, Any]) -> ModelMetadata:
    """Return a copy of ``meta`` with ``overrides`` applied (dict fields merged).

    Raises:
        ValueError: unknown field, or a combination the metadata validation refuses.
    """
    _check_override_fields(overrides)
    data = meta.to_dict()
    for key, value in overrides.items():
        if key in ("training", "metrics", "extra") and isinstance(value, Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ModelMetadata.from_dict(data)


def _check_override_fields(overrides: Mapping[str, Any]) -> None:
    unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelMetadata)}
    if unknown:
        raise ValueError(f"unknown metadata field(s) {sorted(unknown)}")


def main(argv: Sequence[str] | None = None) -> int:
    """``export_onnx`` console script; returns the exit status."""
    parser = argparse.ArgumentParser(prog="export_onnx", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="Lightning .ckpt, model.pt or its dir")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--height",
        type=int,
        default=None,
        help="network input height (default: the checkpoint's training size, else 240)",
    )
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help="network input width (default: the checkpoint's training size, else 320)",
    )
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if any(v is not None and v <= 0 for v in (args.height, args.width)):
            raise ValueError(f"--height/--width must be > 0, got {args.height}x{args.width}")
        model = load_checkpoint_model(args.checkpoint)
        ctx = checkpoint_context(args.checkpoint)
        trained = ctx.input_size or (240, 320)
        size = (args.height or trained[0], args.width or trained[1])
        overrides: dict[str, Any] = {"training": {"checkpoint": str(args.checkpoint)}}
        if ctx.canonical_focal:
            overrides["canonical_focal"] = ctx.canonical_focal
        else:
            log.warning(
                "no canonical focal length found beside %s (an exported model's metadata.json "
                "or the training run's config.yaml): the export's depth will not be rescaled "
                "for each camera's focal length",
                args.checkpoint,
            )
        path, meta = export_onnx(model, args.out, size, args.opset, metadata_overrides=overrides)
    except (OSError, ValueError, RuntimeError) as exc:  # OSError: --out a file, a full disk
        print(f"export_onnx: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"export_onnx: interrupted; {args.out} is as it was", file=sys.stderr)
        return 130
    print(
        f"wrote {path} ({meta.architecture}, {meta.input_height}x{meta.input_width}, "
        f"outputs {', '.join(meta.outputs)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
