"""Choose and build an inference backend (docs/contracts.md section 4).

``backend="auto"`` tries, in order: TensorRT (when ``tensorrt`` imports and a CUDA GPU
exists), PyTorch on CUDA, ONNX Runtime (CPU, or its CUDA provider when that build has one).
An explicitly named backend that cannot run raises :class:`BackendUnavailable` with the
reason, or, with ``fallback=True``, continues down that order from the requested one. The
chosen backend's ``reason`` says why, e.g. ``"auto: tensorrt not importable (No module named
'tensorrt'); torch has no CUDA device; using onnxruntime (CPUExecutionProvider)"``.

Backend modules are imported lazily, so a machine without torch or TensorRT still runs ONNX
Runtime. Models are found by :func:`resolve_model_path`.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joint_perception.runtime.base import Backend, BackendUnavailable

log = logging.getLogger(__name__)

#: What loading a model or building a backend raises for a model that cannot run (missing or
#: corrupt files, a SHA-256 mismatch, a checkpoint with pickled objects:
#: ``weights_io.UntrustedCheckpointError`` is a ValueError, no usable backend). The node reports
#: each as ``cannot start: <message>`` (:func:`cannot_start_message`) and exits with status 2.
MODEL_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    RuntimeError,
    KeyError,
    OSError,
)


def cannot_start_message(exc: BaseException) -> str:
    """The one-line fatal message for a start-up failure (exit status 2)."""
    return f"cannot start: {exc}"


#: Model used when none is named.
DEFAULT_MODEL = "realtime"
PACKAGE = "joint_perception"


def _repo_models_dir() -> Path:
    """``models/`` of a source checkout (``joint_perception/runtime/`` -> repo root)."""
    return Path(__file__).resolve().parents[2] / "models"


def _share_models_dirs() -> list[Path]:
    """``share/joint_perception/models`` of every ament prefix (colcon install) and sys.prefix."""
    dirs: list[Path] = []
    try:  # ament_index_python exists on ROS installs, not in the wheel-based dev venv
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)) / "models")
    except Exception:  # noqa: BLE001 - PackageNotFoundError, ImportError, ...
        pass
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in [*prefixes, sys.prefix]:
        d = Path(prefix) / "share" / PACKAGE / "models"
        if d not in dirs:
            dirs.append(d)
    return dirs


def resolve_model_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """Find a model: an export directory, an ``.onnx`` file, or the name of a shipped model.

    Args:
        name_or_path: a path (directory with ``metadata.json``, or ``.onnx`` file), or a bare
            name such as ``"realtime"`` looked up as ``<dir>/<name>/`` in the repository's
            ``models/`` and then in ``share/joint_perception/models`` (colcon install / ament
            index). None means :data:`DEFAULT_MODEL`.

    Returns:
        The resolved path (directory or .onnx file).

    Raises:
        FileNotFoundError: nothing found; the message lists the places searched.
    """
    target = DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)
    p = Path(target).expanduser()
    if p.is_dir() or (p.is_file() and p.suffix == ".onnx"):
        return p.resolve()
    if p.is_file():
        raise FileNotFoundError(f"{p} is a file but not an .onnx model")
    searched = []
    if len(p.parts) == 1 and not p.suffix:
        for base in [_repo_models_dir(), *_share_models_dirs()]:
            cand = base / target
            searched.append(str(cand))
            if (cand / "metadata.json").is_file():
                return cand
    where = f"; searched {', '.join(searched)}" if searched else ""
    raise FileNotFoundError(f"model {target!r} not found{where}")


# --------------------------------------------------------------------------- probes


def _cuda_unavailable() -> str | None:
    """None when PyTorch sees a CUDA device, else why not."""
    try:
        import torch
    except ImportError as exc:
        return f"torch not importable ({exc})"
    if not torch.cuda.is_available():
        return "torch has no CUDA device"
    return None


def _probe_tensorrt(device: str | None) -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"tensorrt not importable ({exc})"
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything
        return f"tensorrt import failed ({exc})"
    why = _cuda_unavailable()
    return f"tensorrt: {why}" if why else None


def _probe_torch(device: str | None) -> str | None:
    if device is not None and device.startswith("cpu"):
        return None
    return _cuda_unavailable()


def _probe_onnxruntime(device: str | None) -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime not importable ({exc})"
    return None


def _torch_kwargs(device: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {**kwargs, "device": device or "cuda"}


def _onnxruntime_kwargs(device: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    if device is None or "providers" in kwargs:
        return kwargs
    providers = ["CUDAExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    return {**kwargs, "providers": providers}


@dataclass(frozen=True)
class BackendSpec:
    """One inference backend: where its class lives, a cheap availability probe (None = worth
    trying, else why not) and how the device becomes constructor arguments."""

    name: str
    module: str
    cls: str
    probe: Callable[[str | None], str | None]
    device_kwargs: Callable[[str | None, dict[str, Any]], dict[str, Any]] = lambda d, kw: kw


#: The backends in ``auto`` preference order; adding one = an entry here + its module.
BACKEND_SPECS: tuple[BackendSpec, ...] = (
    BackendSpec("tensorrt", "joint_perception.runtime.tensorrt_backend", "TensorRTBackend",
                _probe_tensorrt),
    BackendSpec("torch", "joint_perception.runtime.torch_backend", "TorchBackend", _probe_torch,
                _torch_kwargs),
    BackendSpec("onnxruntime", "joint_perception.runtime.onnxruntime_backend",
                "OnnxRuntimeBackend", _probe_onnxruntime, _onnxruntime_kwargs),
)  # fmt: skip
_SPECS = {b.name: b for b in BACKEND_SPECS}
#: CPU threading options (:mod:`joint_perception.runtime.threads`) and their defaults; the
#: node's parameters and the tools' flags of the same names pass them to :func:`create_backend`.
THREAD_OPTIONS: dict[str, Any] = {"intra_op_threads": 0, "intra_op_spinning": False}
#: Backend names in ``auto`` preference order.
BACKENDS = tuple(_SPECS)


def _probe(name: str, device: str | None) -> str | None:
    """Cheap availability check before constructing; None = worth trying."""
    return _SPECS[name].probe(device)


def _backend_class(name: str) -> Callable[..., Backend]:
    spec = _SPECS[name]
    return getattr(importlib.import_module(spec.module), spec.cls)


def _accepted(cls: Callable, options: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(cls).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def _construct(name: str, path: Path, device: str | None, options: dict[str, Any]) -> Backend:
    try:
        cls = _backend_class(name)
    except ImportError as exc:
        raise BackendUnavailable(f"{name} backend module not importable ({exc})") from exc
    kwargs = _accepted(cls, options)
    ignored = sorted(set(options) - set(kwargs))
    if ignored:
        log.debug("%s backend ignores options %s", name, ignored)
    return cls(path, **_SPECS[name].device_kwargs(device, kwargs))


def create_backend(
    model_path: str | os.PathLike | None = None,
    backend: str = "auto",
    device: str | None = None,
    fallback: bool = True,
    **options: Any,
) -> Backend:
    """Build the inference backend for a model.

    Args:
        model_path: directory / ``.onnx`` / shipped model name (see :func:`resolve_model_path`).
        backend: ``"auto"``, ``"tensorrt"``, ``"torch"`` or ``"onnxruntime"``.
        device: ``"cuda"``, ``"cuda:N"`` or ``"cpu"``; None = the backend's default (TensorRT
            and torch-in-auto: CUDA; explicit torch: CUDA when present, else CPU; ONNX
            Runtime: CUDA provider when present, else CPU).
        fallback: for an explicit backend, try the later ones in the ``auto`` order when it is
            unavailable (logged) instead of raising.
        **options: backend options (``precision``, ``latency_target_ms``, ``cache_dir`` for
            TensorRT; ``fp16``, ``channels_last``, ``cuda_graphs``, ``intra_op_threads`` for
            torch; ``providers``, ``intra_op_threads``, ``intra_op_spinning`` for ONNX
            Runtime; ``outputs``, the network outputs to compute, for ONNX Runtime (the rest
            of the graph pruned) and torch; TensorRT engines compute every output); each
            backend receives the ones its constructor accepts, so a fallback backend ignores
            the TensorRT ones. :data:`THREAD_OPTIONS` are the CPU threading
            ones (0/None threads = :mod:`joint_perception.runtime.threads`' machine default).

    Returns:
        A ready :class:`Backend` whose ``reason`` explains the choice.

    Raises:
        ValueError: unknown backend name; an option no backend accepts; invalid model files.
        FileNotFoundError: model not found.
        BackendUnavailable: nothing could run (the message gives every reason).
    """
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"backend must be one of auto, {', '.join(BACKENDS)}; got {backend!r}")
    known = set().union(*(inspect.signature(_safe_cls(b)).parameters for b in BACKENDS))
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown backend option(s) {unknown}")
    path = resolve_model_path(model_path)
    skipped: list[str] = []
    if backend == "auto":
        chain = list(BACKENDS)
        if device is not None and device.startswith("cpu"):  # TensorRT/torch only on CUDA
            chain, skipped = ["onnxruntime"], ["device=cpu: tensorrt and torch skipped"]
    else:
        start = BACKENDS.index(backend)
        chain = list(BACKENDS[start:]) if fallback else [backend]
    if backend == "torch" and device is None:
        device = None if _cuda_unavailable() is None else "cpu"
    for name in chain:
        dev = device if name == backend or backend == "auto" else None
        why = _probe(name, dev)
        if why is None:
            try:
                chosen = _construct(name, path, dev, options)
            except BackendUnavailable as exc:
                why = str(exc)
        if why is not None:
            skipped.append(why)
            if name == backend and not fallback:
                raise BackendUnavailable(f"backend {backend!r} unavailable: {why}")
            if name == backend:
                log.warning("backend %r unavailable (%s); falling back", backend, why)
            continue
        prefix = "auto" if backend == "auto" else f"backend={backend}"
        chosen.reason = f"{prefix}: {'; '.join([*skipped, f'using {chosen.reason or name}'])}"
        log.info("inference backend: %s", chosen.reason)
        return chosen
    raise BackendUnavailable(f"no inference backend available for {path}: {'; '.join(skipped)}")


def _safe_cls(name: str) -> Callable:
    """The backend class, or a stand-in without parameters when its module cannot import."""
    try:
        return _backend_class(name)
    except ImportError:
        return lambda: None
