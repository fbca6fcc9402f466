"""ONNX -> TensorRT engine with the TensorRT Python API, and the engine cache behind it.

Build steps (:func:`build_engine`): ``trt.Builder`` -> ``create_network`` -> ``trt.OnnxParser``
(each parser error is reported with its node index, name and operator) -> ``IBuilderConfig``
(workspace pool limit, precision, DLA core with GPU fallback, version/hardware compatibility,
builder optimisation level, optimisation profile, timing cache) -> ``build_serialized_network``
with an ``IProgressMonitor`` that logs each build phase, so a multi-minute first build is never
silent. The equivalent ``trtexec`` command is logged too (:func:`trtexec_command`).
:func:`build_and_cache` stores the result in the :class:`~joint_perception.runtime.engine_cache.EngineCache`
under its key (ONNX SHA-256, TensorRT version, GPU, precision, input shape).

This is the runtime's part (the TensorRT backend builds a missing engine on first use); the
accuracy gate and the ``export_engine`` command are export tooling
(:mod:`joint_perception.export.export_engine`).
"""

from __future__ import annotations

import logging
import os
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from joint_perception.io_utils import atomic_write_bytes, sha256_file
from joint_perception.runtime.engine_cache import (
    PRECISIONS,
    EngineCache,
    EngineKey,
)

if TYPE_CHECKING:
    from joint_perception.runtime.engine_cache import CacheEntry

LOG = logging.getLogger(__name__)

HARDWARE_COMPAT = ("none", "ampere_plus", "same_compute_capability")
_TRTEXEC_HWC = {"ampere_plus": "ampere+", "same_compute_capability": "sameComputeCapability"}


class TensorRTUnavailable(RuntimeError):
    """TensorRT or a CUDA GPU is missing (the message says which)."""


class EngineBuildError(RuntimeError):
    """The ONNX parser or the builder failed (the message lists parser errors per node)."""


@dataclass
class BuildOptions:
    """How to build an engine.

    Attributes:
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (INT8 expects a Q/DQ ONNX model;
            FP16 is enabled alongside so non-quantised layers do not fall back to FP32).
        workspace_mb: builder workspace memory pool limit, MiB.
        timing_cache: file holding TensorRT's kernel timing cache, read before and written
            after each build (``None`` = no persistent cache). Speeds up rebuilds.
        dla_core: DLA core index on Jetson (AGX Orin has 0 and 1), or ``None`` for the GPU.
        gpu_fallback: with ``dla_core``, run layers DLA cannot take on the GPU.
        version_compatible: build a version-compatible engine (runs on later TensorRT 10.x;
            loading requires ``runtime.engine_host_code_allowed``; somewhat slower).
        hardware_compatibility: ``"none"``, ``"ampere_plus"`` (any Ampere or newer GPU) or
            ``"same_compute_capability"``.
        min_shape, opt_shape, max_shape: optimisation profile of the input (N, 3, H, W);
            only needed when the ONNX input has dynamic dimensions. ``None`` = static input.
        builder_optimization_level: 0..5 (TensorRT default 3; higher builds slower, may run
            faster).
        input_name: ONNX input tensor name for the profile.
    """

    precision: str = "fp16"
    workspace_mb: int = 1024
    timing_cache: str | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    min_shape: tuple[int, ...] | None = None
    opt_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None
    builder_optimization_level: int | None = None
    input_name: str = "image"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.workspace_mb <= 0:
            raise ValueError(f"workspace_mb must be positive, got {self.workspace_mb}")
        if self.hardware_compatibility not in HARDWARE_COMPAT:
            raise ValueError(
                f"hardware_compatibility must be one of {HARDWARE_COMPAT}, got {self.hardware_compatibility!r}"
            )
        if self.dla_core is not None and self.dla_core < 0:
            raise ValueError(f"dla_core must be >= 0, got {self.dla_core}")
        if self.dla_core is not None and self.precision == "fp32":
            raise ValueError(
                "DLA runs FP16 or INT8 only; use --precision fp16 or int8 with --dla-core"
            )
        if (
            self.builder_optimization_level is not None
            and not 0 <= self.builder_optimization_level <= 5
        ):
            raise ValueError(
                f"builder_optimization_level must be 0..5, got {self.builder_optimization_level}"
            )
        shapes = (self.min_shape, self.opt_shape, self.max_shape)
        if any(s is not None for s in shapes):
            if any(s is None for s in shapes):
                raise ValueError(
                    "an optimisation profile needs all of min_shape, opt_shape, max_shape"
                )
            mn, op, mx = (tuple(int(d) for d in s) for s in shapes)
            if not len(mn) == len(op) == len(mx) or not all(
                a <= b <= c for a, b, c in zip(mn, op, mx, strict=True)
            ):
                raise ValueError(
                    f"profile needs min <= opt <= max per dimension, got {mn}, {op}, {mx}"
                )
            self.min_shape, self.opt_shape, self.max_shape = mn, op, mx

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dims_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(d)) for d in shape)


def trtexec_command(
    onnx_path: str | os.PathLike, engine_path: str | os.PathLike, opts: BuildOptions
) -> str:
    """The ``trtexec`` (TensorRT 10) command line equivalent to :func:`build_engine` with ``opts``.

    Returns:
        A shell-quoted single line, e.g.
        ``trtexec --onnx=model.onnx --saveEngine=x.engine --memPoolSize=workspace:1024M --fp16
        --skipInference``.
    """
    args = [
        "trtexec",
        f"--onnx={os.fspath(onnx_path)}",
        f"--saveEngine={os.fspath(engine_path)}",
        f"--memPoolSize=workspace:{int(opts.workspace_mb)}M",
    ]
    if opts.precision in ("fp16", "int8"):
        args.append("--fp16")
    if opts.precision == "int8":
        args.append("--int8")  # with a Q/DQ model: explicit quantisation, no calibrator
    if opts.min_shape is not None:
        n = opts.input_name
        args += [
            f"--minShapes={n}:{dims_text(opts.min_shape)}",
            f"--optShapes={n}:{dims_text(opts.opt_shape)}",
            f"--maxShapes={n}:{dims_text(opts.max_shape)}",
        ]
    if opts.timing_cache:
        args.append(f"--timingCacheFile={opts.timing_cache}")
    if opts.dla_core is not None:
        args.append(f"--useDLACore={opts.dla_core}")
        if opts.gpu_fallback:
            args.append("--allowGPUFallback")
    if opts.version_compatible:
        args.append("--versionCompatible")
    if opts.hardware_compatibility != "none":
        args.append(f"--hardwareCompatibilityLevel={_TRTEXEC_HWC[opts.hardware_compatibility]}")
    if opts.builder_optimization_level is not None:
        args.append(f"--builderOptimizationLevel={opts.builder_optimization_level}")
    args.append("--skipInference")
    return " ".join(shlex.quote(a) for a in args)


def import_tensorrt():
    """Import TensorRT (10.x) and check that a CUDA GPU is visible.

    Returns:
        The ``tensorrt`` module.

    Raises:
        TensorRTUnavailable: TensorRT not installed, older than 10, or no CUDA device
            (the message says which and what to install).
    """
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TensorRTUnavailable(
            "TensorRT is not installed (python module 'tensorrt' not importable: "
            f"{exc}). Install TensorRT 10 (JetPack 6 on Jetson, `pip install tensorrt` with a CUDA "
            "driver on desktops) or use backend onnxruntime/torch."
        ) from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise TensorRTUnavailable(
            f"TensorRT {trt.__version__} found; this package needs TensorRT 10"
        )
    name, _ = gpu_identity()
    if name is None:
        raise TensorRTUnavailable(
            "TensorRT is installed but no CUDA GPU is visible (torch.cuda.is_available() is False)"
        )
    return trt


def gpu_identity(device: int = 0) -> tuple[str | None, str | None]:
    """(GPU name, compute capability ``"major.minor"``) of CUDA device ``device``, or (None, None)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None, None
        major, minor = torch.cuda.get_device_capability(device)
        return torch.cuda.get_device_name(device), f"{major}.{minor}"
    except Exception:  # broken driver, etc.
        return None, None


def engine_key(
    onnx_sha256: str, precision: str, input_shape: tuple[int, ...], device: int = 0
) -> EngineKey:
    """The cache key for this machine (needs TensorRT and a GPU).

    Raises:
        TensorRTUnavailable: see :func:`import_tensorrt`.
    """
    trt = import_tensorrt()
    name, cc = gpu_identity(device)
    return EngineKey(
        onnx_sha256, str(trt.__version__), str(name), str(cc), precision, tuple(input_shape)
    )


_TRT_LOGGER = None


def trt_logger(trt):
    """The process-wide ``trt.ILogger`` forwarding TensorRT messages to Python logging.

    One instance is shared by every builder and runtime (TensorRT warns when they differ).
    """
    global _TRT_LOGGER
    if _TRT_LOGGER is not None:
        return _TRT_LOGGER
    sev = trt.ILogger.Severity
    levels = {
        sev.INTERNAL_ERROR: logging.CRITICAL,
        sev.ERROR: logging.ERROR,
        sev.WARNING: logging.WARNING,
        sev.INFO: logging.DEBUG,
        sev.VERBOSE: logging.DEBUG,
    }

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # TensorRT callback
            logging.getLogger("tensorrt").log(levels.get(severity, logging.INFO), "%s", msg)

    _TRT_LOGGER = _Logger()
    return _TRT_LOGGER


def _make_progress_monitor(trt, log: logging.Logger):
    """An ``IProgressMonitor`` that logs phase starts/ends and every ~10 % of steps."""

    class _Progress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._start: dict[str, float] = {}
            self._steps: dict[str, int] = {}
            self._level: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._start[phase_name] = time.monotonic()
            self._steps[phase_name] = max(int(num_steps), 1)
            # top-level phases at INFO, nested ones (kernel tactics...) at DEBUG
            self._level[phase_name] = logging.DEBUG if parent_phase else logging.INFO
            log.log(self._level[phase_name], "TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name, step):
            n = self._steps.get(phase_name, 1)
            if n >= 10 and (step + 1) % max(n // 10, 1) == 0:
                log.log(
                    self._level.get(phase_name, logging.INFO),
                    "TensorRT build: %s %d/%d",
                    phase_name,
                    step + 1,
                    n,
                )
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            dt = time.monotonic() - self._start.pop(phase_name, time.monotonic())
            log.log(
                self._level.pop(phase_name, logging.INFO),
                "TensorRT build: %s done in %.1f s",
                phase_name,
                dt,
            )

    return _Progress()


def parser_errors(parser) -> list[str]:
    """Human-readable ONNX parser errors, one per failing node (index, name, operator)."""
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node()
        name = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        where = f"node {node}" + (f" {name!r}" if name else "") + (f" ({op})" if op else "")
        out.append(f"{where}: {err.desc()} [code {err.code()}]")
    return out


def build_engine(
    onnx_path: str | os.PathLike,
    opts: BuildOptions,
    logger: logging.Logger | None = None,
    engine_path: str | os.PathLike | None = None,
) -> bytes:
    """Build a serialised TensorRT engine from an ONNX file (TensorRT 10 API).

    Args:
        onnx_path: the model (for ``precision="int8"`` a Q/DQ model from
            :func:`joint_perception.export.quantize.quantize_qdq`).
        opts: :class:`BuildOptions`.
        logger: Python logger for progress (default this module's).
        engine_path: where the caller will store the engine (only for the logged trtexec line).

    Returns:
        The serialised engine (``IHostMemory`` converted to bytes).

    Raises:
        TensorRTUnavailable: no TensorRT / no GPU.
        EngineBuildError: parser errors (listed per node) or a failed build.
    """
    log = logger or LOG
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    log.info("equivalent command: %s", trtexec_command(onnx_path, engine_path or "<engine>", opts))
    logger_ = trt_logger(trt)
    builder = trt.Builder(logger_)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger_)
    if not parser.parse_from_file(str(onnx_path)):
        errors = parser_errors(parser)
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}:\n  " + "\n  ".join(errors))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
    if opts.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if opts.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if opts.dla_core is not None:
        if builder.num_DLA_cores <= opts.dla_core:
            raise EngineBuildError(
                f"DLA core {opts.dla_core} requested; this device has {builder.num_DLA_cores}"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(opts.dla_core)
        if opts.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if opts.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if opts.hardware_compatibility == "ampere_plus":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    elif opts.hardware_compatibility == "same_compute_capability":
        level = getattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY", None)
        if level is None:
            raise EngineBuildError(
                f"TensorRT {trt.__version__} has no SAME_COMPUTE_CAPABILITY level"
            )
        config.hardware_compatibility_level = level
    if opts.builder_optimization_level is not None:
        config.builder_optimization_level = int(opts.builder_optimization_level)
    if opts.min_shape is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(opts.input_name, opts.min_shape, opts.opt_shape, opts.max_shape)
        config.add_optimization_profile(profile)

    cache_path = Path(opts.timing_cache).expanduser() if opts.timing_cache else None
    cache_blob = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(cache_blob)
    config.set_timing_cache(timing_cache, ignore_mismatch=True)
    config.progress_monitor = _make_progress_monitor(trt, log)

    t0 = time.monotonic()
    log.info(
        "building %s engine from %s (this can take minutes on first build)",
        opts.precision,
        onnx_path,
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT failed to build an engine from {onnx_path} (see TensorRT log above)"
        )
    log.info("engine built in %.1f s (%.1f MiB)", time.monotonic() - t0, serialized.nbytes / 2**20)
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
        log.info("timing cache saved to %s", cache_path)
    return bytes(serialized)


def build_and_cache(
    onnx_path: Path,
    key: EngineKey,
    opts: BuildOptions,
    cache: EngineCache,
    build_from: Path | None = None,
    metadata: dict[str, Any] | None = None,
    logger: logging.Logger | None = None,
) -> CacheEntry:
    """Build an engine for ``key`` (from ``build_from``, default ``onnx_path``) and store it."""
    src = build_from or onnx_path
    t0 = time.monotonic()
    blob = build_engine(src, opts, logger, engine_path=cache.paths(key)[0])
    meta = {
        "onnx": os.fspath(onnx_path),
        "built_from": os.fspath(src),
        "built_from_sha256": sha256_file(src),
        "build_options": opts.to_dict(),
        "build_seconds": round(time.monotonic() - t0, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta.update(metadata or {})
    return cache.store(key, blob, meta)
