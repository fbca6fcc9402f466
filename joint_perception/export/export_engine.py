"""``export_engine``: an exported model -> a TensorRT engine that passed the accuracy gate.

:func:`build_engine_with_gate` is the full pipeline used by ``export_engine`` and by ``train``
when TensorRT is present: ONNX checks -> the precision's ONNX graph (FP32 as exported, the FP16
conversion, or Q/DQ INT8 quantised on real calibration frames) -> strongly typed build and
cache (:mod:`joint_perception.runtime.tensorrt_engine`) -> accuracy gate against ONNX Runtime
fp32 (:mod:`joint_perception.export.accuracy_gate`) and latency measurement on the same frames
-> both recorded in the cache sidecar; a refused engine is removed from the cache.

``--precision best`` builds, gates and times fp32, fp16 and (with calibration frames) int8,
then reports the engine the node's ``precision: best`` loads
(:func:`joint_perception.runtime.engine_select.choose_precision` on the same cache and keys).

Without TensorRT the command still checks the ONNX model, writes the FP16 graph for
``--precision fp16`` and, given calibration frames, the INT8 Q/DQ graph for ``--precision
int8``, prints the ``trtexec`` line, then exits with status 2 and a message saying what is
missing.

INT8 graphs leave the few layers that cannot take INT8 in float: a per-layer sensitivity
search checked in ONNX Runtime against the gate's limits
(:mod:`joint_perception.export.int8_mixed`); the engine's sidecar records the layers.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from joint_perception.export.accuracy_gate import EngineRefused
from joint_perception.io_utils import sha256_file
from joint_perception.metadata import ModelMetadata, load_metadata, verify_onnx_hash
from joint_perception.runtime.base import Backend
from joint_perception.runtime.engine_cache import DEFAULT_CACHE_DIR, EngineCache
from joint_perception.runtime.engine_select import (
    MOST_PRECISE_FIRST,
    PRECISION_CHOICES,
    Choice,
    latency_target_ms,
)
from joint_perception.runtime.tensorrt_engine import (
    HARDWARE_COMPAT,
    BuildOptions,
    EngineBuildError,
    TensorRTUnavailable,
    build_and_cache,
    derived_onnx_path,
    dims_text,
    engine_key,
    import_tensorrt,
    prepare_onnx,
    trtexec_command,
)

if TYPE_CHECKING:
    from joint_perception.export.accuracy_gate import GateConfig
    from joint_perception.export.calibration import CalibrationFrames
    from joint_perception.runtime.engine_cache import CacheEntry

LOG = logging.getLogger(__name__)


def resolve_model(model: str | os.PathLike) -> tuple[Path, ModelMetadata]:
    """(ONNX path, metadata) for a model directory or an ``.onnx`` file; hash verified.

    Raises:
        FileNotFoundError: no ONNX/metadata file.
        ValueError: the ONNX file does not match the metadata's SHA-256.
    """
    p = Path(model).expanduser()
    meta = load_metadata(p)
    onnx_path = p if p.suffix == ".onnx" else p / meta.onnx_file
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    verify_onnx_hash(meta, onnx_path)
    return onnx_path, meta


def measure_latency(backend: Backend, images, warmup: int = 3) -> dict[str, Any]:
    """Time ``backend.predict`` one frame at a time (what the node does per camera frame).

    Args:
        backend: a ready backend.
        images: (N, 3, H, W) float32 frames, N >= 1 (e.g. the gate frames).
        warmup: untimed calls on the first frame first (CUDA lazy init, autotuning).

    Returns:
        ``{"median_ms", "p90_ms", "frames", "what"}``: wall time of ``predict`` per frame,
        host array in to host arrays out (for TensorRT: copies, ``execute_async_v3`` and the
        stream synchronisation), on this machine.

    Raises:
        ValueError: no frames.
    """
    if len(images) == 0:
        raise ValueError("no frames to time")
    for _ in range(max(int(warmup), 0)):
        backend.predict(images[:1])
    times = []
    for i in range(len(images)):
        t0 = time.perf_counter()
        backend.predict(images[i : i + 1])
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    return {
        "median_ms": round(statistics.median(times), 3),
        "p90_ms": round(p90, 3),
        "frames": len(times),
        "what": f"{backend.describe()}: predict of 1 frame, host to host",
    }


def build_engine_with_gate(
    model_dir: str | os.PathLike,
    opts: BuildOptions,
    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR,
    calibration: CalibrationFrames | None = None,
    gate: GateConfig | None = None,
    gate_frames: CalibrationFrames | None = None,
    force: bool = False,
    logger: logging.Logger | None = None,
) -> CacheEntry:
    """Checks -> precision graph -> strongly typed build -> cache -> accuracy gate + latency
    -> sidecar record.

    Args:
        model_dir: exported model directory (``metadata.json`` + ONNX) or the ONNX file.
        opts: build options; ``opts.precision == "int8"`` requires ``calibration``
            (``fp16`` needs onnxconverter-common).
        cache_dir: engine cache directory.
        calibration: real frames for INT8 Q/DQ calibration (also used by the gate when
            ``gate_frames`` is None).
        gate: accuracy gate configuration (thresholds, policy ``refuse``/``warn``);
            default :meth:`GateConfig.for_precision`. ``GateConfig(enabled=False)`` skips it.
        gate_frames: validation frames for the gate.
        force: rebuild even when a valid engine is cached.

    Returns:
        The cache entry; ``entry.metadata["accuracy_gate"]`` holds the gate result and
        ``entry.metadata["latency"]`` the :func:`measure_latency` result on the gate frames.

    Raises:
        TensorRTUnavailable, EngineBuildError: see :func:`build_engine`.
        ValueError: ONNX checks failed, or INT8 without calibration frames.
        EngineRefused: gate failed with policy ``refuse`` (the engine is removed from the cache).
    """
    from joint_perception.export.accuracy_gate import GateConfig, enforce, run_gate
    from joint_perception.export.onnx_checks import check_onnx

    log = logger or LOG
    onnx_path, meta = resolve_model(model_dir)
    report = check_onnx(onnx_path)
    log.info("%s", report.summary())
    if not report.ok:
        raise ValueError(f"{onnx_path} is not buildable by TensorRT: " + "; ".join(report.errors))
    shape = tuple(report.inputs.get(opts.input_name) or next(iter(report.inputs.values())))
    onnx_sha = sha256_file(onnx_path)
    key = engine_key(onnx_sha, opts.precision, shape)
    cache = EngineCache(cache_dir)
    found = cache.lookup(key)
    if found.hit and not force:
        log.info("using cached engine %s", found.entry.engine_path)
        entry = found.entry
    else:
        extra: dict[str, Any] = {}
        if opts.precision == "int8":
            if calibration is None:
                raise ValueError(
                    "INT8 needs real calibration frames (--calib-bag or --calib-dataset)"
                )
            from joint_perception.export.int8_mixed import quantize_mixed

            build_from = derived_onnx_path(cache.directory, onnx_sha, "int8")
            limits = (gate or GateConfig.for_precision("int8")).thresholds
            mixed = quantize_mixed(onnx_path, build_from, calibration, limits, metadata=meta)
            extra["calibration"] = calibration.describe()
            extra["int8_float_layers"] = mixed.float_nodes
            extra["int8_onnxruntime_check"] = mixed.metrics
        else:
            build_from = prepare_onnx(onnx_path, opts.precision, cache.directory)
        entry = build_and_cache(onnx_path, key, opts, cache, build_from, extra, log)

    gate = gate or GateConfig.for_precision(opts.precision)
    frames = gate_frames or calibration
    if not gate.enabled:
        return entry
    if frames is None:
        log.warning(
            "accuracy gate skipped: no validation frames (give --calib-bag/--calib-dataset)"
        )
        cache.update_metadata(key, accuracy_gate={"skipped": "no validation frames"})
        return entry
    from joint_perception.runtime.tensorrt_backend import TensorRTBackend

    candidate = TensorRTBackend(
        onnx_path, metadata=meta, precision=opts.precision, cache_dir=cache.directory
    )
    try:
        result = run_gate(candidate, onnx_path, frames.images, gate, metadata=meta)
        latency = measure_latency(candidate, frames.images)
    finally:
        candidate.close()
    entry.metadata = cache.update_metadata(key, accuracy_gate=result.to_dict(), latency=latency)
    try:
        enforce(result, gate.policy, what=f"{opts.precision} engine {entry.engine_path.name}")
    except EngineRefused:
        cache.invalidate(key, "refused by accuracy gate")
        raise
    return entry


# ----------------------------------------------------------------------------------------- CLI


def _shape_arg(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape must look like 1x3x240x320, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export_engine",
        description="Build (and cache) a TensorRT engine from an exported joint_perception model.",
    )
    p.add_argument(
        "--model",
        help="model directory (metadata.json + model.onnx) or .onnx file (required unless --list)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="fp16",
        help="engine precision; best = build, gate and time fp32, fp16 and (with calibration "
        "frames) int8, and report the one the node's precision: best loads",
    )
    p.add_argument(
        "--latency-target-ms",
        type=float,
        default=0.0,
        help="latency target of --precision best (ms); 0 = the model's "
        "(metadata extra.latency_target_ms, else 20)",
    )
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="engine cache directory")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--calib-bag", help="rosbag2 directory with camera images for calibration/gate"
    )
    src.add_argument(
        "--calib-dataset", help="data set name (e.g. nyu_folder) for calibration/gate frames"
    )
    p.add_argument("--calib-root", help="data set root directory (with --calib-dataset)")
    p.add_argument("--calib-split", default="train", help="data set split (with --calib-dataset)")
    p.add_argument(
        "--calib-topic",
        default=None,
        help="image topic in --calib-bag (default: first image topic)",
    )
    p.add_argument("--calib-frames", type=int, default=64, help="number of calibration frames")
    p.add_argument("--dla-core", type=int, default=None, help="Jetson DLA core (GPU fallback on)")
    p.add_argument("--workspace-mb", type=int, default=1024)
    p.add_argument("--timing-cache", default=None, help="timing cache file reused across builds")
    p.add_argument("--version-compatible", action="store_true")
    p.add_argument("--hardware-compatibility", choices=HARDWARE_COMPAT, default="none")
    p.add_argument("--opt-level", type=int, default=None, help="builder optimisation level 0..5")
    p.add_argument(
        "--min-shape", type=_shape_arg, help="profile min input shape NxCxHxW (dynamic models)"
    )
    p.add_argument("--opt-shape", type=_shape_arg)
    p.add_argument("--max-shape", type=_shape_arg)
    p.add_argument("--gate-policy", choices=("refuse", "warn"), default="refuse")
    p.add_argument("--no-gate", action="store_true", help="skip the accuracy gate")
    p.add_argument("--force", action="store_true", help="rebuild even if a valid engine is cached")
    p.add_argument(
        "--print-trtexec", action="store_true", help="print the trtexec command and exit"
    )
    p.add_argument("--list", action="store_true", help="list the engine cache and exit")
    return p


def _options_from_args(args: argparse.Namespace, precision: str) -> BuildOptions:
    return BuildOptions(
        precision=precision,
        workspace_mb=args.workspace_mb,
        timing_cache=args.timing_cache,
        dla_core=args.dla_core,
        version_compatible=args.version_compatible,
        hardware_compatibility=args.hardware_compatibility,
        min_shape=args.min_shape,
        opt_shape=args.opt_shape,
        max_shape=args.max_shape,
        builder_optimization_level=args.opt_level,
    )


def _precisions(args: argparse.Namespace) -> list[str]:
    """The engines ``--precision`` builds (``best``: every one this invocation can build)."""
    if args.precision != "best":
        return [args.precision]
    calibrated = bool(args.calib_bag or args.calib_dataset)
    return [
        p
        for p in MOST_PRECISE_FIRST
        if not (p == "int8" and not calibrated) and not (p == "fp32" and args.dla_core is not None)
    ]


def _print_trtexec(onnx_path: Path, shape, opts: BuildOptions, cache: EngineCache) -> None:
    """Print the trtexec line of one precision (writes the FP16 graph it names)."""
    engine = cache.directory / f"{opts.precision}-{dims_text([d or 0 for d in shape])}.engine"
    sha = sha256_file(onnx_path)
    if opts.precision == "int8":
        graph = derived_onnx_path(cache.directory, sha, "int8")
        note = "the Q/DQ graph export_engine writes from the calibration frames"
    else:
        try:
            graph = prepare_onnx(onnx_path, opts.precision, cache.directory)
            note = "" if opts.precision == "fp32" else "the FP16 graph, written now"
        except (ImportError, ValueError) as exc:
            graph = derived_onnx_path(cache.directory, sha, opts.precision)
            note = f"not written: {exc}"
    print(
        f"equivalent trtexec command ({opts.precision}):\n  {trtexec_command(graph, engine, opts)}"
    )
    if note:
        print(f"  ({graph.name}: {note})")


def _write_int8_graph(onnx_path: Path, meta: ModelMetadata, calib, cache: EngineCache) -> Path:
    """Write the INT8 Q/DQ graph (:func:`joint_perception.export.int8_mixed.quantize_mixed`)
    where the int8 trtexec line expects it, and say which layers it leaves in float."""
    from joint_perception.export.int8_mixed import quantize_mixed

    graph = derived_onnx_path(cache.directory, sha256_file(onnx_path), "int8")
    mixed = quantize_mixed(onnx_path, graph, calib, metadata=meta)  # the INT8 gate's limits
    m = mixed.metrics
    print(
        f"INT8 Q/DQ graph written: {graph}\n  {len(mixed.float_nodes)} layer(s) left in float"
        f"{': ' + ', '.join(mixed.float_nodes) if mixed.float_nodes else ''}\n"
        f"  ONNX Runtime check against FP32 on the calibration frames: depth abs rel "
        f"{m.get('depth_abs_rel', float('nan')):.4f}, label agreement "
        f"{m.get('label_agreement', float('nan')):.4f}: "
        f"{'within' if mixed.passed else 'OUTSIDE'} the INT8 gate's limits"
    )
    return graph


def _report_best(args, onnx_path: Path, meta: ModelMetadata, shape, cache: EngineCache) -> Choice:
    """What the node's ``precision: best`` loads: the TensorRT backend's own choice."""
    from joint_perception.runtime.tensorrt_backend import choose_engine

    target = latency_target_ms(meta, args.latency_target_ms)
    choice, _ = choose_engine(sha256_file(onnx_path), tuple(shape), "best", cache, target)
    return choice


def _calibration_from_args(args: argparse.Namespace, meta: ModelMetadata):
    from joint_perception.export.calibration import CalibrationFrames

    size = (meta.input_height, meta.input_width)
    if args.calib_bag:
        return CalibrationFrames.from_bag(
            args.calib_bag, size, args.calib_frames, topic=args.calib_topic
        )
    if args.calib_dataset:
        return CalibrationFrames.from_dataset(
            args.calib_dataset,
            size,
            args.calib_frames,
            root=args.calib_root,
            split=args.calib_split,
        )
    return None


def main(argv: list[str] | None = None) -> int:
    """``export_engine`` entry point; returns the exit status (0 ok, 1 error, 2 no TensorRT)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.list and not args.model:
        parser.error("--model is required (unless --list)")
    logging.basicConfig(level=logging.INFO, format="[export_engine] %(levelname)s %(message)s")
    from joint_perception.export.accuracy_gate import GateConfig
    from joint_perception.export.onnx_checks import check_onnx

    cache = EngineCache(args.cache_dir)
    if args.list:
        for e in cache.entries():
            gate = e.metadata.get("accuracy_gate", {})
            latency = e.metadata.get("latency", {}).get("median_ms")
            print(
                f"{e.engine_path.name}  {e.size / 2**20:.1f} MiB  {e.key.to_dict()}  "
                f"gate={gate.get('passed')}  latency_ms={latency}"
            )
        for path, why in cache.invalid_files():
            print(f"{path.name}  INVALID: {why}")
        return 0
    try:
        options = {p: _options_from_args(args, p) for p in _precisions(args)}
        onnx_path, meta = resolve_model(args.model)
        report = check_onnx(onnx_path)
    except (ValueError, FileNotFoundError) as exc:
        print(f"export_engine: error: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    shape = report.inputs.get("image") or next(iter(report.inputs.values()), [])
    for opts in options.values():
        _print_trtexec(onnx_path, shape, opts, cache)
    print(
        "  (an engine trtexec writes is not in the engine cache: the node loads the engines "
        "export_engine stores with their sidecar)"
    )
    if args.print_trtexec:
        return 0
    if args.precision == "int8" and not (args.calib_bag or args.calib_dataset):
        print(
            "export_engine: error: --precision int8 needs real calibration frames "
            "(--calib-bag BAG or --calib-dataset NAME --calib-root DIR)",
            file=sys.stderr,
        )
        return 1
    if not report.ok:
        print(f"export_engine: error: {onnx_path} is not buildable by TensorRT", file=sys.stderr)
        return 1
    try:
        calib = _calibration_from_args(args, meta)
    except (ValueError, FileNotFoundError) as exc:
        print(f"export_engine: error: {exc}", file=sys.stderr)
        return 1
    try:
        import_tensorrt()
    except TensorRTUnavailable as exc:
        if "int8" in options and calib is not None:  # the graph the trtexec line names
            _write_int8_graph(onnx_path, meta, calib, cache)
        print(f"export_engine: cannot build here: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for precision, opts in options.items():
        gate = GateConfig.for_precision(
            precision, policy=args.gate_policy, enabled=not args.no_gate
        )
        try:
            entry = build_engine_with_gate(
                args.model, opts, args.cache_dir, calibration=calib, gate=gate, force=args.force
            )
        except EngineRefused as exc:
            print(
                f"export_engine: {precision} engine refused by the accuracy gate: {exc}",
                file=sys.stderr,
            )
            failed += 1
            continue
        except (ValueError, ImportError, EngineBuildError, TensorRTUnavailable) as exc:
            print(f"export_engine: error ({precision}): {exc}", file=sys.stderr)
            failed += 1
            continue
        latency = entry.metadata.get("latency", {}).get("median_ms")
        timed = f", {latency} ms per frame" if latency is not None else ""
        print(f"engine ({precision}{timed}): {entry.engine_path}")
    if args.precision != "best":
        return 1 if failed else 0
    choice = _report_best(args, onnx_path, meta, shape, cache)
    print(f"precision best -> {choice.precision}: {choice.reason}")
    return 0 if choice.entry is not None else 1


if __name__ == "__main__":
    sys.exit(main())
