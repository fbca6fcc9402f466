"""``export_engine``: an exported model -> a TensorRT engine that passed the accuracy gate.

:func:`build_engine_with_gate` is the full pipeline used by ``export_engine`` and by ``train``
when TensorRT is present: ONNX checks -> (quantise from real calibration frames) -> build and
cache (:mod:`joint_perception.runtime.tensorrt_engine`) -> accuracy gate against ONNX Runtime
fp32 (:mod:`joint_perception.export.accuracy_gate`) -> result recorded in the cache sidecar; a
refused engine is removed from the cache.

Without TensorRT the command still checks the ONNX model and prints the ``trtexec`` line, then
exits with status 2 and a message saying what is missing.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from joint_perception.export.accuracy_gate import EngineRefused
from joint_perception.io_utils import sha256_file
from joint_perception.metadata import ModelMetadata, load_metadata, verify_onnx_hash
from joint_perception.runtime.engine_cache import DEFAULT_CACHE_DIR, PRECISIONS, EngineCache
from joint_perception.runtime.tensorrt_engine import (
    HARDWARE_COMPAT,
    BuildOptions,
    EngineBuildError,
    TensorRTUnavailable,
    build_and_cache,
    dims_text,
    engine_key,
    import_tensorrt,
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
    """Checks -> (Q/DQ quantisation) -> build -> cache -> accuracy gate -> sidecar record.

    Args:
        model_dir: exported model directory (``metadata.json`` + ONNX) or the ONNX file.
        opts: build options; ``opts.precision == "int8"`` requires ``calibration``.
        cache_dir: engine cache directory.
        calibration: real frames for INT8 Q/DQ calibration (also used by the gate when
            ``gate_frames`` is None).
        gate: accuracy gate configuration (thresholds, policy ``refuse``/``warn``);
            default :meth:`GateConfig.for_precision`. ``GateConfig(enabled=False)`` skips it.
        gate_frames: validation frames for the gate.
        force: rebuild even when a valid engine is cached.

    Returns:
        The cache entry; ``entry.metadata["accuracy_gate"]`` holds the gate result.

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
        raise ValueError(
            f"{onnx_path} is not buildable by TensorRT 10: " + "; ".join(report.errors)
        )
    shape = tuple(report.inputs.get(opts.input_name) or next(iter(report.inputs.values())))
    key = engine_key(sha256_file(onnx_path), opts.precision, shape)
    cache = EngineCache(cache_dir)
    found = cache.lookup(key)
    if found.hit and not force:
        log.info("using cached engine %s", found.entry.engine_path)
        entry = found.entry
    else:
        build_from = onnx_path
        extra: dict[str, Any] = {}
        if opts.precision == "int8":
            if calibration is None:
                raise ValueError(
                    "INT8 needs real calibration frames (--calib-bag or --calib-dataset)"
                )
            from joint_perception.export.quantize import quantize_qdq

            build_from = cache.directory / f"{key.digest}.qdq.onnx"
            quantize_qdq(onnx_path, build_from, calibration)
            extra["calibration"] = calibration.describe()
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
    finally:
        candidate.close()
    entry.metadata = cache.update_metadata(key, accuracy_gate=result.to_dict())
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
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="engine cache directory")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--calib-bag", help="rosbag2 directory with camera images for calibration/gate"
    )
    src.add_argument(
        "--calib-dataset", help="data set name (e.g. nyuv2) for calibration/gate frames"
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


def _options_from_args(args: argparse.Namespace) -> BuildOptions:
    return BuildOptions(
        precision=args.precision,
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
            print(
                f"{e.engine_path.name}  {e.size / 2**20:.1f} MiB  {e.key.to_dict()}  gate={gate.get('passed')}"
            )
        for path, why in cache.invalid_files():
            print(f"{path.name}  INVALID: {why}")
        return 0
    try:
        opts = _options_from_args(args)
        onnx_path, meta = resolve_model(args.model)
    except (ValueError, FileNotFoundError) as exc:
        print(f"export_engine: error: {exc}", file=sys.stderr)
        return 1
    report = check_onnx(onnx_path)
    print(report.summary())
    shape = report.inputs.get("image") or next(iter(report.inputs.values()), [])
    engine_name = f"{opts.precision}-{dims_text([d or 0 for d in shape])}.engine"
    print(
        "equivalent trtexec command:\n  "
        + trtexec_command(onnx_path, cache.directory / engine_name, opts)
    )
    if opts.precision == "int8":
        print("  (INT8 runs on the Q/DQ model that export_engine writes next to the engine)")
    if args.print_trtexec:
        return 0
    if opts.precision == "int8" and not (args.calib_bag or args.calib_dataset):
        print(
            "export_engine: error: --precision int8 needs real calibration frames "
            "(--calib-bag BAG or --calib-dataset NAME --calib-root DIR)",
            file=sys.stderr,
        )
        return 1
    if not report.ok:
        print(f"export_engine: error: {onnx_path} is not buildable by TensorRT 10", file=sys.stderr)
        return 1
    try:
        import_tensorrt()
    except TensorRTUnavailable as exc:
        print(f"export_engine: cannot build here: {exc}", file=sys.stderr)
        return 2
    try:
        calib = _calibration_from_args(args, meta)
        gate = GateConfig.for_precision(
            opts.precision, policy=args.gate_policy, enabled=not args.no_gate
        )
        entry = build_engine_with_gate(
            args.model, opts, args.cache_dir, calibration=calib, gate=gate, force=args.force
        )
    except EngineRefused as exc:
        print(f"export_engine: engine refused by the accuracy gate: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, EngineBuildError, TensorRTUnavailable) as exc:
        print(f"export_engine: error: {exc}", file=sys.stderr)
        return 1
    print(f"engine: {entry.engine_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
