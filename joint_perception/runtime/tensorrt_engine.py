"""ONNX -> strongly typed TensorRT engine with the TensorRT Python API, and the cache behind it.

Every engine is built as a **strongly typed network** on every supported TensorRT
(:data:`SUPPORTED_TENSORRT`): TensorRT 11 knows no other kind, and TensorRT 10 builds one when
``create_network`` gets ``1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)`` (the enum's
value is 1 in 10.x and 0 in 11.x, so it is never hard-coded). Each tensor keeps the type the
ONNX graph gives it; the weakly typed precision flags (``BuilderFlag.FP16``/``INT8``, removed in
TensorRT 11) are never set. An engine's precision is therefore chosen by the graph it is built
from (:func:`prepare_onnx`, :mod:`joint_perception.runtime.onnx_precision`): the exported FP32
model, its FP16 conversion, or a Q/DQ INT8 graph from calibration frames.

Build steps (:func:`build_engine`): ``trt.Builder`` -> ``create_network`` (strongly typed) ->
``trt.OnnxParser`` (each parser error is reported with its node index, name and operator) ->
``IBuilderConfig`` (workspace pool limit, DLA core with GPU fallback, version/hardware
compatibility, builder optimisation level, optimisation profile, timing cache) ->
``build_serialized_network`` with an ``IProgressMonitor`` that logs each build phase, so a
multi-minute first build is never silent. The equivalent ``trtexec`` command is logged too
(:func:`trtexec_command`). :func:`build_and_cache` stores the result in the
:class:`~joint_perception.runtime.engine_cache.EngineCache` under its key (ONNX SHA-256,
TensorRT version, GPU, precision, input shape, build recipe).

This is the runtime's part (the TensorRT backend builds a missing FP32/FP16 engine on first
use); quantisation, the accuracy gate and the ``export_engine`` command are export tooling
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
from joint_perception.runtime.onnx_precision import convert_fp16, onnx_precision

if TYPE_CHECKING:
    import tensorrt

    from joint_perception.runtime.engine_cache import CacheEntry

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorRTRelease:
    """A TensorRT release this package is checked against.

    Attributes:
        version: ``"major.minor"``.
        platform: where it comes from (JetPack version, desktop package).
        bindings_wheel: the x86-64 Python bindings on PyPI whose names CI reads
            (test/test_tensorrt_api_surface.py), as a pip requirement.
    """

    version: str
    platform: str
    bindings_wheel: str


#: The TensorRT releases the code is checked against (oldest first; the README repeats this
#: table and a test compares them). Older releases are refused by :func:`import_tensorrt`.
SUPPORTED_TENSORRT: tuple[TensorRTRelease, ...] = (
    TensorRTRelease(
        "10.3", "JetPack 6.1 / 6.2 (Jetson Orin, CUDA 12.6)", "tensorrt-cu12-bindings==10.3.0"
    ),
    TensorRTRelease(
        "10.13", "JetPack 7.x (Jetson Thor, CUDA 13.0)", "tensorrt-cu12-bindings==10.13.0.35"
    ),
    TensorRTRelease(
        "11.4", "desktop / server: `pip install tensorrt`", "tensorrt-cu13-bindings==11.4.0.106"
    ),
)

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
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``: the precision of the ONNX graph the
            engine is built from (:func:`prepare_onnx`; INT8 = a Q/DQ graph). No builder
            precision flag is set: the network is strongly typed.
        workspace_mb: builder workspace memory pool limit, MiB.
        timing_cache: file holding TensorRT's kernel timing cache, read before and written
            after each build (``None`` = no persistent cache). Speeds up rebuilds.
        dla_core: DLA core index on Jetson (AGX Orin has 0 and 1), or ``None`` for the GPU.
        gpu_fallback: with ``dla_core``, run layers DLA cannot take on the GPU.
        version_compatible: build a version-compatible engine (runs on later TensorRT
            releases of the same major version; loading requires
            ``runtime.engine_host_code_allowed``; somewhat slower).
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
    """The ``trtexec`` command line equivalent to :func:`build_engine` with ``opts``.

    ``onnx_path`` is the graph of ``opts.precision`` (:func:`prepare_onnx`): the precision
    comes from it, so the line has ``--stronglyTyped`` and never ``--fp16``/``--int8``
    (TensorRT 10 drops them with ``--stronglyTyped``; trtexec 11 has none of them and takes
    ``--stronglyTyped`` as a no-op). The same line works on every supported TensorRT.

    Returns:
        A shell-quoted single line, e.g. ``trtexec --onnx=model.fp16.onnx --stronglyTyped
        --saveEngine=x.engine --memPoolSize=workspace:1024M --skipInference``.
    """
    args = [
        "trtexec",
        f"--onnx={os.fspath(onnx_path)}",
        "--stronglyTyped",
        f"--saveEngine={os.fspath(engine_path)}",
        f"--memPoolSize=workspace:{int(opts.workspace_mb)}M",
    ]
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


def _major_minor(version: str) -> tuple[int, int]:
    parts = (str(version).split(".") + ["0"])[:2]
    return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)


def tensorrt_version_problem(version: str) -> str | None:
    """Why TensorRT ``version`` (``tensorrt.__version__``) cannot be used, or None.

    Releases older than the first of :data:`SUPPORTED_TENSORRT` are refused.
    """
    oldest = SUPPORTED_TENSORRT[0]
    if _major_minor(version) < _major_minor(oldest.version):
        supported = ", ".join(r.version for r in SUPPORTED_TENSORRT)
        return (
            f"TensorRT {version} is older than {oldest.version} ({oldest.platform}); "
            f"supported: {supported}"
        )
    return None


_WARNED_VERSIONS: set[str] = set()


def import_tensorrt():
    """Import TensorRT, check its version (:func:`tensorrt_version_problem`) and that a CUDA
    GPU is visible.

    A release of a later major version than the last of :data:`SUPPORTED_TENSORRT` is used
    with a warning (logged once): its API has not been checked.

    Returns:
        The ``tensorrt`` module.

    Raises:
        TensorRTUnavailable: TensorRT not installed, too old, or no CUDA device (the message
            says which and what to install).
    """
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError as exc:
        raise TensorRTUnavailable(
            "TensorRT is not installed (python module 'tensorrt' not importable: "
            f"{exc}). Install TensorRT (JetPack 6 or 7 on Jetson, `pip install tensorrt` with a "
            "CUDA driver on desktops; docs/deploy_gpu.md) or use backend onnxruntime/torch."
        ) from exc
    problem = tensorrt_version_problem(trt.__version__)
    if problem:
        raise TensorRTUnavailable(problem)
    newest = SUPPORTED_TENSORRT[-1]
    later = _major_minor(trt.__version__)[0] > _major_minor(newest.version)[0]
    if later and trt.__version__ not in _WARNED_VERSIONS:
        _WARNED_VERSIONS.add(trt.__version__)
        LOG.warning(
            "TensorRT %s is newer than %s, the newest release this package is checked against",
            trt.__version__,
            newest.version,
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


def parser_errors(parser: tensorrt.OnnxParser) -> list[str]:
    """Human-readable ONNX parser errors, one per failing node (index, name, operator)."""
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        name, op = err.node_name(), err.node_operator()
        where = f"node {err.node()}" + (f" {name!r}" if name else "") + (f" ({op})" if op else "")
        out.append(f"{where}: {err.desc()} [code {err.code()}]")
    return out


def strongly_typed_flags(trt) -> int:
    """``create_network`` flags of a strongly typed network (the flag's value is 1 in
    TensorRT 10 and 0 in 11, where it is ignored because every network is strongly typed)."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def build_engine(
    onnx_path: str | os.PathLike,
    opts: BuildOptions,
    logger: logging.Logger | None = None,
    engine_path: str | os.PathLike | None = None,
) -> bytes:
    """Build a serialised, strongly typed TensorRT engine from an ONNX file.

    Args:
        onnx_path: the graph of ``opts.precision`` (:func:`prepare_onnx`): the FP32 model,
            its FP16 conversion, or for ``"int8"`` a Q/DQ graph from
            :func:`joint_perception.export.quantize.quantize_qdq`.
        opts: :class:`BuildOptions`.
        logger: Python logger for progress (default this module's).
        engine_path: where the caller will store the engine (only for the logged trtexec line).

    Returns:
        The serialised engine (``IHostMemory`` converted to bytes).

    Raises:
        EngineBuildError: the graph's precision is not ``opts.precision`` (a strongly typed
            build would silently give another precision), parser errors (listed per node), or
            a failed build.
        TensorRTUnavailable: no TensorRT / no GPU.
    """
    log = logger or LOG
    onnx_path = Path(onnx_path)
    graph_precision = onnx_precision(onnx_path)
    if graph_precision != opts.precision:
        raise EngineBuildError(
            f"{onnx_path} is an {graph_precision} graph but an {opts.precision} engine was asked "
            "for: a strongly typed engine has its graph's precision (use prepare_onnx)"
        )
    trt = import_tensorrt()
    log.info("equivalent command: %s", trtexec_command(onnx_path, engine_path or "<engine>", opts))
    logger_ = trt_logger(trt)
    builder = trt.Builder(logger_)
    network = builder.create_network(strongly_typed_flags(trt))
    parser = trt.OnnxParser(network, logger_)
    if not parser.parse_from_file(str(onnx_path)):
        errors = parser_errors(parser)
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}:\n  " + "\n  ".join(errors))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
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
        "building strongly typed %s engine from %s (this can take minutes on first build)",
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


def derived_onnx_path(directory: str | os.PathLike, onnx_sha256: str, precision: str) -> Path:
    """Where the ``precision`` graph of the model with hash ``onnx_sha256`` is kept:
    ``<directory>/onnx/<first 16 hex digits>.<precision>.onnx`` (next to the engines)."""
    return Path(directory).expanduser() / "onnx" / f"{onnx_sha256[:16]}.{precision}.onnx"


def prepare_onnx(
    onnx_path: str | os.PathLike, precision: str, directory: str | os.PathLike
) -> Path:
    """The ONNX graph a strongly typed ``precision`` engine is built from.

    Args:
        onnx_path: the exported FP32 model.
        precision: ``"fp32"`` (returns ``onnx_path``) or ``"fp16"`` (converts it with
            :func:`~joint_perception.runtime.onnx_precision.convert_fp16` to
            :func:`derived_onnx_path` under ``directory``, rewritten on every call).
        directory: the engine cache directory.

    Returns:
        The path of the graph to build.

    Raises:
        ValueError: ``"int8"`` (its Q/DQ graph needs calibration frames: ``export_engine
            --precision int8``), an unknown precision, or a failed FP16 conversion.
        ImportError: FP16 without onnxconverter-common.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_path = Path(onnx_path)
    if precision == "fp32":
        return onnx_path
    if precision == "int8":
        raise ValueError(
            "an INT8 engine is built from a Q/DQ graph quantised on real calibration frames: "
            "run `export_engine --model <dir> --precision int8 --calib-bag <bag>`"
        )
    dst = derived_onnx_path(directory, sha256_file(onnx_path), precision)
    return convert_fp16(onnx_path, dst)


def build_and_cache(
    onnx_path: Path,
    key: EngineKey,
    opts: BuildOptions,
    cache: EngineCache,
    build_from: Path | None = None,
    metadata: dict[str, Any] | None = None,
    logger: logging.Logger | None = None,
) -> CacheEntry:
    """Build the engine of ``key`` and store it in ``cache``.

    Args:
        onnx_path: the exported FP32 model (its hash is in the key).
        key: cache key; ``key.precision`` must equal ``opts.precision``.
        opts: build options.
        cache: the engine cache.
        build_from: the graph to build (default :func:`prepare_onnx` of ``onnx_path``; INT8
            needs its Q/DQ graph here).
        metadata: extra sidecar fields.
        logger: progress logger.

    Raises:
        ValueError: ``key`` and ``opts`` disagree on the precision; see :func:`prepare_onnx`.
        EngineBuildError, TensorRTUnavailable: see :func:`build_engine`.
    """
    if key.precision != opts.precision:
        raise ValueError(f"key is for {key.precision}, build options for {opts.precision}")
    src = (
        Path(build_from) if build_from else prepare_onnx(onnx_path, opts.precision, cache.directory)
    )
    t0 = time.monotonic()
    blob = build_engine(src, opts, logger, engine_path=cache.paths(key)[0])
    meta = {
        "onnx": os.fspath(onnx_path),
        "built_from": os.fspath(src),
        "built_from_sha256": sha256_file(src),
        "network": "strongly typed",
        "build_options": opts.to_dict(),
        "build_seconds": round(time.monotonic() - t0, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta.update(metadata or {})
    return cache.store(key, blob, meta)
