"""``benchmark``: where the time goes, per backend x model x network resolution.

    benchmark [--models realtime,pap] [--backends onnxruntime,torch] \
              [--resolutions 240x320,480x640] [--repeats 20] [--json out.json]

For each combination the same 640x480 frame (a real NYUv2 test frame when ../shared/data is
there, else a synthetic room) goes through every stage the node runs, timed separately
(median of ``--repeats`` runs after warm-up):

``decode`` (rgb8 Image bytes -> array), ``decode_jpeg`` (the compressed transport),
``preprocess``, ``inference``, ``postprocess`` (:class:`joint_perception.runtime.processing.
Pipeline`), ``pointcloud`` (back-projection + organised PointCloud2 packing), ``colorize``
(segmentation/color) and ``messages`` (building every output message through the real
sensor_msgs classes with :mod:`joint_perception.ros.conversions`).

Also measured in the same run, so every speed claim is a ratio:

* the machine's dense fp32 matmul rate (torch and numpy sgemm) — a roofline-style ceiling;
  each backend's achieved GFLOP/s (model FLOPs counted with ``torch.utils.flop_counter.
  FlopCounterMode`` on the torch module, 1 multiply-add = 2 FLOPs) is reported against it;
* PyTorch eager (the deploy wrapper called directly, NCHW fp32) — each backend's speed-up;
* peak resident memory of each combination (``VmHWM`` reset through ``/proc/self/clear_refs``);
* the organised PointCloud2 packing against a straightforward per-point Python reference
  (``struct.pack_into`` per point), checked to give the same points;
* with ``--ros`` (real node over loopback DDS, through ``replay``; :func:`ros_baselines`):
  the direct (no-ROS) pipeline against the ROS round trip, and the newest-frame-only node
  against a node with a FIFO queue of 10 (``queue_size:=10``) under 30 Hz input.

Models come from ``models/<name>`` when shipped (its weights), else are built untrained from
the registry (FLOPs and speed do not depend on the weights; the output says which). Each
(model, resolution) is exported to ONNX in a work directory first.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from joint_perception.allocator import keep_freed_memory
from joint_perception.io_utils import atomic_write_json
from joint_perception.runtime.threads import (
    add_thread_arguments,
    limit_opencv_threads,
    thread_options,
)

__all__ = [
    "BenchmarkOptions",
    "run_benchmark",
    "format_table",
    "measure_sgemm",
    "count_flops",
    "time_ms",
    "stage_times",
    "pointcloud_baseline",
    "pack_cloud_per_point",
    "main",
]

DEFAULT_RESOLUTIONS = ((240, 320), (480, 640))
FRAME_SIZE = (480, 640)
NON_NETWORK_BUDGET_MS = 15.0
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_FRAME = SHARED_DATA / "nyuv2_test" / "rgb" / "0001.png"
DEFAULT_BAG = SHARED_DATA / "bags" / "nyuv2_test10_mcap"
NYU_K = np.array([[518.8579, 0.0, 325.58245], [0.0, 519.46961, 253.73617], [0.0, 0.0, 1.0]])


# ---------------------------------------------------------------------------- measurement


def time_ms(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> dict[str, float]:
    """Wall time of ``fn()`` in ms: ``median``, ``p95``, ``min`` over ``repeats`` calls after
    ``warmup`` untimed calls (``time.perf_counter``).

    Raises:
        ValueError: ``repeats < 1``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return {"median": statistics.median(t), "p95": float(np.percentile(t, 95)), "min": min(t)}


def measure_sgemm(n: int = 1024, repeats: int = 5) -> dict[str, float]:
    """Dense fp32 matrix-multiply rate of this machine (``2 n^3`` FLOPs per n x n product).

    Returns:
        ``{"torch_gflops", "numpy_gflops", "best_gflops", "n", "torch_threads"}`` (GFLOP/s from
        the fastest of ``repeats`` products, the usual way a peak is measured).
    """
    import torch

    flops = 2.0 * n**3
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    np_ms = time_ms(lambda: a @ b, repeats, 1)["min"]
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    with torch.inference_mode():
        t_ms = time_ms(lambda: torch.mm(ta, tb), repeats, 1)["min"]
    out = {
        "n": n,
        "torch_gflops": flops / (t_ms * 1e6),
        "numpy_gflops": flops / (np_ms * 1e6),
        "torch_threads": torch.get_num_threads(),
    }
    out["best_gflops"] = max(out["torch_gflops"], out["numpy_gflops"])
    return out


def count_flops(module, size_hw: tuple[int, int]) -> int:
    """FLOPs of one forward pass on a (1, 3, H, W) input, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (convolutions, matmuls; 1 MAC = 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, *size_hw)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return int(counter.get_total_flops())


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` (Linux ``/proc/self/clear_refs`` = 5); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """This process's peak resident set (``VmHWM``) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------- point cloud


def pack_cloud_per_point(
    depth: np.ndarray, K: np.ndarray, rgb: np.ndarray, labels: np.ndarray
) -> bytes:
    """The straightforward per-point reference for the organised PointCloud2 payload.

    One Python iteration per pixel: back-project ``(u, v, z)`` with K (REP 103 optical frame),
    pack ``x, y, z`` (float32; NaN when the depth is invalid), ``rgb`` (0x00RRGGBB as float32
    bits) and ``label`` (uint32) little-endian with ``struct.pack_into`` — the same 20-byte
    layout as :func:`joint_perception.pointcloud.pack_organized`. A baseline only.
    """
    h, w = depth.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    buf = bytearray(h * w * 20)
    nan = float("nan")
    d = depth.tolist()
    c = rgb.tolist()
    lab = labels.tolist()
    off = 0
    for v in range(h):
        for u in range(w):
            z = d[v][u]
            if z == z and z > 0 and z != math.inf:
                x, y = (u - cx) * z / fx, (v - cy) * z / fy
            else:
                x = y = z = nan
            r, g, b = c[v][u]
            struct.pack_into("<fffII", buf, off, x, y, z, (r << 16) | (g << 8) | b, lab[v][u])
            off += 20
    return bytes(buf)


def pointcloud_baseline(
    depth: np.ndarray, K: np.ndarray, rgb: np.ndarray, labels: np.ndarray, repeats: int = 10
) -> dict:
    """Vectorised back-projection + organised packing vs :func:`pack_cloud_per_point`.

    Returns:
        ``{"vectorised_ms", "per_point_python_ms", "speedup", "points", "same_points"}``;
        ``same_points`` compares every field (x, y, z within 1e-5 m: the reference computes
        in float64).
    """
    from joint_perception.geometry import backproject
    from joint_perception.pointcloud import pack_organized, unpack

    def vectorised():
        return pack_organized(backproject(depth, K), rgb, labels)

    fast = time_ms(vectorised, repeats, 1)["median"]
    t0 = time.perf_counter()
    ref = pack_cloud_per_point(depth, K, rgb, labels)
    slow = (time.perf_counter() - t0) * 1e3
    packed = vectorised()
    h, w = depth.shape
    a = unpack(packed.data, packed.fields, packed.point_step, h, w)
    b = unpack(np.frombuffer(ref, np.uint8), packed.fields, 20, h, w)
    same = all(
        np.allclose(a[k], b[k], atol=1e-5, equal_nan=True)
        if k in "xyz"
        else np.array_equal(a[k].view(np.uint32), b[k].view(np.uint32))
        for k in a
    )
    return {
        "vectorised_ms": fast,
        "per_point_python_ms": slow,
        "speedup": slow / fast,
        "points": h * w,
        "same_points": bool(same),
    }


# ---------------------------------------------------------------------------- models


@dataclass
class PreparedModel:
    """A model exported at one resolution, with its torch module for FLOPs and eager timing."""

    name: str
    size_hw: tuple[int, int]
    export_dir: Path
    module: object  # DeployWrapper
    weights: str


def prepare_model(name: str, size_hw: tuple[int, int], work_dir: Path) -> PreparedModel:
    """Export ``name`` at ``size_hw`` into ``work_dir`` (ONNX + model.pt + metadata.json).

    The shipped model's weights (``models/<name>``, via
    :func:`joint_perception.runtime.factory.resolve_model_path`) when there are any, else the
    untrained registry network.

    Raises:
        KeyError: unknown model name (the registry lists the known ones).
    """
    from joint_perception.export.onnx_export import export_onnx
    from joint_perception.models.deploy import DeployWrapper
    from joint_perception.models.registry import build_model
    from joint_perception.models.serialization import load_torch_model

    weights = "untrained (random initialisation; timing and FLOPs do not depend on weights)"
    model = None
    overrides = None
    try:
        from joint_perception.runtime.factory import resolve_model_path

        shipped = resolve_model_path(name)
        model, meta = load_torch_model(shipped if shipped.is_dir() else shipped.parent)
        weights = f"shipped {shipped}"
        overrides = {
            "min_depth": meta.min_depth,
            "max_depth": meta.max_depth,
            "canonical_focal": meta.canonical_focal,
        }
    except (FileNotFoundError, ValueError, KeyError, RuntimeError, OSError):
        model = build_model(name)
    model.eval()
    out = work_dir / f"{name}_{size_hw[0]}x{size_hw[1]}"
    _, meta = export_onnx(model, out, size_hw, metadata_overrides=overrides)
    return PreparedModel(
        name, tuple(size_hw), out, DeployWrapper(model, meta.mean, meta.std).eval(), weights
    )


# ---------------------------------------------------------------------------- stages


def load_frame(path: Path | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """A 640x480 RGB frame and its K: ``path`` or the first NYUv2 test frame of
    ../shared/data, else a synthetic room. Returns ``(rgb, K, description)``."""
    from joint_perception.data.nyuv2 import read_image

    for p in ([Path(path)] if path else []) + [SHARED_FRAME]:
        if p.is_file():
            rgb = read_image(p)
            if rgb.shape[:2] != FRAME_SIZE:
                import cv2

                rgb = cv2.resize(rgb, FRAME_SIZE[::-1], interpolation=cv2.INTER_AREA)
            return rgb, NYU_K.copy(), str(p)
        if path and p == Path(path):
            raise FileNotFoundError(f"--frame: no such image {p}")
    from joint_perception.data.synthetic import SyntheticScenes

    s = SyntheticScenes(1, FRAME_SIZE[0], FRAME_SIZE[1], seed=0)[0]
    return s["rgb"], np.asarray(s["K"], dtype=np.float64), "synthetic scene (seed 0)"


def stage_times(
    pipeline, rgb: np.ndarray, K: np.ndarray, repeats: int = 10, warmup: int = 2
) -> dict[str, float | None]:
    """Median time (ms) of each per-frame stage of the node on one frame (see module doc).

    ``messages`` is None when the sensor_msgs classes cannot be imported.
    """
    from joint_perception.colormap import colorize_labels, label_palette
    from joint_perception.geometry import backproject
    from joint_perception.image_codec import decode_compressed, decode_image, encode_compressed
    from joint_perception.pointcloud import pack_organized

    h, w = rgb.shape[:2]
    raw = np.ascontiguousarray(rgb).tobytes()
    jpeg_format, jpeg = encode_compressed(rgb, "jpeg", 90)
    out: dict[str, float | None] = {}
    out["decode"] = time_ms(lambda: decode_image("rgb8", h, w, 3 * w, raw), repeats, warmup)[
        "median"
    ]
    out["decode_jpeg"] = time_ms(lambda: decode_compressed(jpeg_format, jpeg), repeats, warmup)[
        "median"
    ]
    batch = pipeline.preprocess(rgb)
    out["preprocess"] = time_ms(lambda: pipeline.preprocess(rgb), repeats, warmup)["median"]
    pred = pipeline.backend.predict(batch)
    out["inference"] = time_ms(lambda: pipeline.backend.predict(batch), repeats, warmup)["median"]
    out["postprocess"] = time_ms(lambda: pipeline.postprocess(pred, K, (h, w)), repeats, warmup)[
        "median"
    ]
    res = pipeline.postprocess(pred, K, (h, w))
    depth = res.depth if res.depth is not None else np.full((h, w), 2.0, np.float32)
    labels = res.labels if res.labels is not None else np.zeros((h, w), np.uint8)
    normals = res.normals if res.normals is not None else np.zeros((h, w, 3), np.float32)
    out["pointcloud"] = time_ms(
        lambda: pack_organized(backproject(depth, res.K), rgb, labels), repeats, warmup
    )["median"]
    pal = label_palette(pipeline.metadata.num_classes)
    out["colorize"] = time_ms(lambda: colorize_labels(labels, pal), repeats, warmup)["median"]
    color = colorize_labels(labels, pal)
    cloud = pack_organized(backproject(depth, res.K), rgb, labels)
    try:
        from std_msgs.msg import Header

        from joint_perception.ros.conversions import (
            array_to_image_msg,
            cloud_to_msg,
            make_camera_info,
        )
    except ImportError:
        out["messages"] = None
    else:
        header = Header(frame_id="camera_color_optical_frame")

        def build():
            array_to_image_msg(depth, "32FC1", header)
            array_to_image_msg(labels, "mono8", header)
            array_to_image_msg(color, "rgb8", header)
            array_to_image_msg(normals, "32FC3", header)
            make_camera_info(res.K, h, w, header)
            cloud_to_msg(cloud, header)

        out["messages"] = time_ms(build, repeats, warmup)["median"]
    return out


# ---------------------------------------------------------------------------- the run


@dataclass
class BenchmarkOptions:
    """Mirrors the command line (see :func:`main`)."""

    models: Sequence[str] = ("realtime",)
    backends: Sequence[str] = ("onnxruntime", "torch", "tensorrt")
    resolutions: Sequence[tuple[int, int]] = DEFAULT_RESOLUTIONS
    repeats: int = 10
    warmup: int = 2
    frame: Path | None = None
    work_dir: Path | None = None
    pointcloud_baseline: bool = True
    ros: bool = False
    bag: Path = DEFAULT_BAG
    ros_frames: int = 60
    cpu: bool = True
    scaling: bool = False
    threads: dict = field(default_factory=dict)
    progress: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr))


def _machine() -> dict:
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_min": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cuda": torch.cuda.is_available(),
        "platform": platform.platform(),
    }


def run_benchmark(opts: BenchmarkOptions) -> dict:
    """Run every combination; returns the JSON-ready result (see :func:`format_table`).

    A backend that cannot run here (no TensorRT, no CUDA) is listed under ``skipped`` with
    the reason instead of failing the run.
    """
    import torch

    from joint_perception.runtime.base import BackendUnavailable
    from joint_perception.runtime.factory import create_backend
    from joint_perception.runtime.processing import Pipeline

    log = opts.progress
    rgb, K, frame_desc = load_frame(opts.frame)
    log("measuring the dense matmul ceiling ...")
    result: dict = {
        "machine": _machine(),
        "frame": frame_desc,
        "frame_size": list(FRAME_SIZE),
        "repeats": opts.repeats,
        "sgemm": measure_sgemm(),
        "runs": [],
        "skipped": [],
        "baselines": {},
    }
    ceiling = result["sgemm"]["best_gflops"]
    tmp = None
    work = opts.work_dir
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="jp_benchmark_")
        work = Path(tmp.name)
    try:
        for name in opts.models:
            for hw in opts.resolutions:
                log(f"exporting {name} at {hw[0]}x{hw[1]} ...")
                pm = prepare_model(name, hw, Path(work))
                flops = count_flops(pm.module, hw)
                x = torch.rand(1, 3, *hw)
                with torch.inference_mode():
                    eager = time_ms(lambda m=pm.module, x=x: m(x), opts.repeats, opts.warmup)[
                        "median"
                    ]
                for backend in opts.backends:
                    reset_peak_rss()
                    try:
                        dev = (
                            "cpu" if backend == "torch" and not torch.cuda.is_available() else None
                        )
                        be = create_backend(
                            pm.export_dir,
                            backend=backend,
                            device=dev,
                            fallback=False,
                            **opts.threads,
                        )
                    except (BackendUnavailable, ValueError) as exc:
                        result["skipped"].append(
                            {
                                "model": name,
                                "resolution": list(hw),
                                "backend": backend,
                                "reason": str(exc),
                            }
                        )
                        log(f"  {backend}: skipped ({exc})")
                        continue
                    try:
                        log(f"  {backend} on {be.device} ...")
                        stages = stage_times(Pipeline(be), rgb, K, opts.repeats, opts.warmup)
                    finally:
                        be.close()
                    inf = stages["inference"]
                    other = sum(
                        v
                        for k, v in stages.items()
                        if v is not None and k not in ("inference", "decode_jpeg")
                    )
                    gflops = flops / (inf * 1e6)
                    result["runs"].append(
                        {
                            "model": name,
                            "weights": pm.weights,
                            "resolution": list(hw),
                            "backend": backend,
                            "device": be.device,
                            "reason": be.reason,
                            "stages_ms": stages,
                            "non_network_ms": other,
                            "total_ms": other + inf,
                            "fps": 1e3 / (other + inf),
                            "gflop": flops / 1e9,
                            "achieved_gflops": gflops,
                            "fraction_of_sgemm": gflops / ceiling,
                            "eager_torch_ms": eager,
                            "speedup_vs_eager": eager / inf,
                            "peak_rss_mb": peak_rss_mb(),
                        }
                    )
        if opts.ros:
            first = next((r for r in result["runs"] if r["backend"] == "onnxruntime"), None)
            if first is None:
                raise ValueError("--ros needs the onnxruntime backend in --backends")
            name, hw = first["model"], first["resolution"]
            model_dir = Path(work) / f"{name}_{hw[0]}x{hw[1]}"
            log(f"ROS baselines with {name} {hw[0]}x{hw[1]} on onnxruntime ({opts.bag}) ...")
            direct = sum(
                v for k, v in first["stages_ms"].items() if v is not None and k != "decode_jpeg"
            )
            result["baselines"].update(
                ros_baselines(model_dir, opts.bag, direct, Path(work), opts.ros_frames)
            )
        if opts.cpu:
            result["cpu"] = _cpu_section(opts, result, Path(work), rgb, K)
        result["machine"]["load_average_after"] = os.getloadavg()
        if opts.pointcloud_baseline:
            log("point cloud: vectorised vs per-point Python ...")
            from joint_perception.data.nyuv2 import read_png

            depth_png = SHARED_FRAME.parent.parent / "depth_mm" / SHARED_FRAME.name
            if depth_png.is_file():
                depth = read_png(depth_png).astype(np.float32) / 1000.0
                depth[depth <= 0] = np.nan
            else:
                depth = np.full(FRAME_SIZE, 2.5, np.float32)
            labels = (np.arange(depth.size).reshape(depth.shape) % 41).astype(np.uint8)
            result["baselines"]["pointcloud"] = pointcloud_baseline(
                depth, K, rgb, labels, opts.repeats
            )
    finally:
        if tmp is not None:
            tmp.cleanup()
    return result


def _cpu_section(opts: BenchmarkOptions, result: dict, work: Path, rgb, K) -> dict:
    """:mod:`joint_perception.evaluation.benchmark_cpu` on the first ONNX Runtime run's model
    (the smallest exported resolution first): CPU per frame, conv peak, scaling."""
    from joint_perception.evaluation import benchmark_cpu as bc
    from joint_perception.runtime.factory import create_backend
    from joint_perception.runtime.processing import Pipeline

    first = next((r for r in result["runs"] if r["backend"] == "onnxruntime"), None)
    if first is None:
        return {"skipped": "no onnxruntime run"}
    name, hw = first["model"], first["resolution"]
    opts.progress(f"CPU time per frame with {name} {hw[0]}x{hw[1]} on onnxruntime ...")
    be = create_backend(work / f"{name}_{hw[0]}x{hw[1]}", backend="onnxruntime", **opts.threads)
    try:
        pipe = Pipeline(be)
        out = {
            "model": name,
            "resolution": hw,
            "backend": be.describe(),
            "frame": bc.frame_cpu(pipe, rgb, K, opts.repeats, opts.warmup),
            "conv_peak": bc.conv_peak(opts.repeats),
        }
        out["network_gflops"] = first["gflop"] * 1e3 / out["frame"]["network_process_ms"]
        out["default_outputs"] = _default_outputs_network(be, work, name, hw, opts)
        if out["default_outputs"]:
            ms = out["default_outputs"]["process_ms"]
            out["default_outputs"]["gflops"] = first["gflop"] * 1e3 / ms
        if opts.scaling:
            opts.progress("per-resolution scaling 320x240 .. 1920x1080 ...")
            out["scaling"] = bc.resolution_scaling(pipe, rgb, K, repeats=opts.repeats)
    finally:
        be.close()
    return out


def _default_outputs_network(full, work: Path, name: str, hw, opts: BenchmarkOptions) -> dict:
    """Process CPU of the network computing what the node publishes by default
    (``ros.topics.outputs_needed`` of the default ``publish_*``: the graph pruned to those
    outputs) against the whole graph, interleaved; {} when that is the whole graph."""
    from joint_perception.evaluation.benchmark_cpu import interleaved_cpu_ms
    from joint_perception.ros.topics import outputs_needed, publish_parameters
    from joint_perception.runtime.factory import create_backend

    wanted = outputs_needed({p: default for p, (default, _) in publish_parameters().items()})
    model = work / f"{name}_{hw[0]}x{hw[1]}"
    pruned = create_backend(model, backend="onnxruntime", outputs=wanted, **opts.threads)
    try:
        if not getattr(pruned, "pruned", False):
            return {}
        batch = np.zeros((1, 3, hw[0], hw[1]), np.float32)
        cpu = interleaved_cpu_ms(
            {"all": lambda: full.predict(batch), "default": lambda: pruned.predict(batch)},
            opts.repeats,
            opts.warmup,
        )
        return {
            "outputs": list(pruned.output_names),
            "process_ms": cpu["default"]["process_ms"],
            "all_outputs_process_ms": cpu["all"]["process_ms"],
        }
    finally:
        pruned.close()


def ros_baselines(
    model_dir: Path, bag: Path, direct_ms: float, work_dir: Path, frames: int = 60
) -> dict:
    """Baselines through the real node over loopback DDS (three ``replay`` runs).

    * ``ros_round_trip``: the node at 2 Hz (never busy): p50 of send -> last output, against
      ``direct_ms`` (the same stages called directly, no ROS); the difference is the cost of
      the middleware (serialisation, DDS transport of every output, executor hand-offs).
    * ``queue``: ``frames`` frames at 30 Hz to the default newest-frame-only node and to one
      with ``queue_size:=10``: mean and p95 end-to-end latency and missed frames.

    Args:
        model_dir: exported model for the node (``model:=``), run on ONNX Runtime.
        bag: input bag (RealSense-style topics).
        direct_ms: per-frame time of the direct pipeline for the same model and backend.
        work_dir: replay outputs go to sub-directories here.
        frames: frames per 30 Hz run.

    Raises:
        FileNotFoundError: no bag; RuntimeError: the node failed (replay's message).
    """
    from joint_perception.evaluation.replay import ReplayOptions, replay

    if not Path(bag).exists():
        raise FileNotFoundError(f"bag for the ROS baselines not found: {bag}")
    base = [f"model:={model_dir}", "backend:=onnxruntime"]

    def run(out: str, rate: float, n: int | None, extra: list[str]) -> dict:
        return replay(
            ReplayOptions(
                bag=Path(bag),
                out=work_dir / out,
                rate_hz=rate,
                frames=n,
                overrides=base + extra,
                progress=False,
                report=False,
            )
        )

    slow = run("ros_2hz", 2.0, None, [])
    newest = run("newest_30hz", 30.0, frames, [])
    queued = run("queue10_30hz", 30.0, frames, ["queue_size:=10"])
    ros_p50 = slow["latency_all_outputs_ms"]["p50_ms"]

    def lat(s: dict) -> dict:
        p = s["performance"]
        return {
            "mean_ms": p["MEAN_LATENCY"],
            "p95_ms": p["P95_LATENCY"],
            "missed": p["NUM_MISSED_FRAMES"],
            "sent": p["NUM_FRAMES_SENT"],
            "output_rate_hz": p["MEAN_FRAME_RATE"],
            "node_cpu_percent": p.get("NODE_CPU_PERCENT"),
        }

    n, q = lat(newest), lat(queued)
    return {
        "ros_round_trip": {
            "direct_ms": direct_ms,
            "ros_p50_ms": ros_p50,
            "middleware_ms": None if ros_p50 is None else ros_p50 - direct_ms,
            "frames": slow["frames_in"],
        },
        "queue": {
            "rate_hz": 30.0,
            "newest": n,
            "queue10": q,
            "newest_mean_ms": n["mean_ms"],
            "queue_mean_ms": q["mean_ms"],
            "ratio": (q["mean_ms"] / n["mean_ms"]) if n["mean_ms"] and q["mean_ms"] else None,
        },
    }


# ---------------------------------------------------------------------------- output


def _f(v, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def format_table(result: dict) -> str:
    """Markdown tables: per-stage times per run, throughput/FLOPs, baselines, skipped."""
    runs = result["runs"]
    load = result["machine"].get("load_average_1_5_15_min", [float("nan")])[0]
    stage_names = [
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "pointcloud",
        "colorize",
        "messages",
        "decode_jpeg",
    ]
    lines = [
        f"Frame {result['frame_size'][1]}x{result['frame_size'][0]} ({result['frame']}); "
        f"{result['machine']['cpu']}, {result['machine']['cpu_count']} CPUs; median of "
        f"{result['repeats']} runs; load average {load:.1f} at the start. "
        f"sgemm ceiling {result['sgemm']['best_gflops']:.1f} "
        f"GFLOP/s (torch {result['sgemm']['torch_gflops']:.1f}, numpy "
        f"{result['sgemm']['numpy_gflops']:.1f}).",
        "",
        "| model | net | backend | " + " | ".join(stage_names) + " | non-network | total | fps |",
        "|" + "---|" * (len(stage_names) + 6),
    ]
    for r in runs:
        s = r["stages_ms"]
        lines.append(
            f"| {r['model']} | {r['resolution'][0]}x{r['resolution'][1]} | "
            f"{r['backend']} | "
            + " | ".join(_f(s.get(k)) for k in stage_names)
            + f" | {_f(r['non_network_ms'])} | {_f(r['total_ms'])} | {_f(r['fps'])} |"
        )
    lines += [
        "",
        "| model | net | backend | GFLOP | GFLOP/s | of sgemm | eager torch (ms) | "
        "speed-up vs eager | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['model']} | {r['resolution'][0]}x{r['resolution'][1]} | "
            f"{r['backend']} | {r['gflop']:.2f} | {r['achieved_gflops']:.1f} | "
            f"{100 * r['fraction_of_sgemm']:.0f} % | {r['eager_torch_ms']:.1f} | "
            f"{r['speedup_vs_eager']:.2f}x | {_f(r['peak_rss_mb'], 0)} |"
        )
    b = result.get("baselines", {})
    if b:
        lines += ["", "| baseline | this project | reference | ratio |", "|---|---|---|---|"]
    if "pointcloud" in b:
        p = b["pointcloud"]
        lines.append(
            f"| PointCloud2 640x480 packing (same points: {p['same_points']}) | "
            f"{p['vectorised_ms']:.2f} ms vectorised | {p['per_point_python_ms']:.0f} ms"
            f" per-point Python | {p['speedup']:.0f}x |"
        )
    if "ros_round_trip" in b:
        p = b["ros_round_trip"]
        lines.append(
            f"| direct pipeline vs ROS round trip (p50) | {_f(p['direct_ms'])} ms "
            f"direct | {_f(p['ros_p50_ms'])} ms via ROS | "
            + ("-" if p["middleware_ms"] is None else f"{p['middleware_ms']:+.1f}")
            + " ms middleware |"
        )
    if "queue" in b:
        p = b["queue"]
        n, q = p["newest"], p["queue10"]
        lines.append(
            f"| 30 Hz input, mean latency (p95; missed of {n['sent']}): newest-frame "
            f"vs FIFO queue of 10 | {_f(n['mean_ms'])} ms ({_f(n['p95_ms'])}; "
            f"{n['missed']}) | {_f(q['mean_ms'])} ms ({_f(q['p95_ms'])}; "
            f"{q['missed']}) | {_f(p['ratio'])}x |"
        )
    if result.get("cpu", {}).get("frame"):
        from joint_perception.evaluation.benchmark_cpu import format_cpu_tables

        lines += ["", format_cpu_tables(result["cpu"]).rstrip("\n")]
    for s in result.get("skipped", []):
        lines.append(
            f"\nskipped {s['backend']} ({s['model']} {s['resolution'][0]}x"
            f"{s['resolution'][1]}): {s['reason']}"
        )
    return "\n".join(lines) + "\n"


def _resolution(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"resolution must be HxW like 240x320, got {text!r}"
        ) from None
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"resolution {text} must be at least 32x32")
    return h, w


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``benchmark``; prints the tables, optionally writes JSON. Returns 0, or 1
    with a message on a missing bag/frame or a failed node."""
    ap = argparse.ArgumentParser(prog="benchmark", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--models",
        default="realtime",
        help="comma-separated registry names (default realtime; e.g. pap,cinet)",
    )
    ap.add_argument(
        "--backends",
        default="onnxruntime,torch,tensorrt",
        help="comma-separated; unavailable ones are skipped with the reason",
    )
    ap.add_argument(
        "--resolutions", default="240x320,480x640", help="comma-separated network input sizes HxW"
    )
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--frame", type=Path, default=None, help="RGB image to use (640x480)")
    ap.add_argument("--work-dir", type=Path, default=None, help="keep the exports here")
    ap.add_argument("--json", type=Path, default=None, help="write the full result here")
    ap.add_argument("--no-pointcloud-baseline", action="store_true")
    ap.add_argument(
        "--ros",
        action="store_true",
        help="also measure the ROS baselines through the real node (~1 min)",
    )
    ap.add_argument("--bag", type=Path, default=DEFAULT_BAG, help="bag for --ros")
    ap.add_argument("--ros-frames", type=int, default=60, help="frames per 30 Hz --ros run")
    ap.add_argument(
        "--no-cpu", action="store_true", help="skip the CPU-time section (benchmark_cpu)"
    )
    ap.add_argument(
        "--scaling",
        action="store_true",
        help="CPU-time scaling with the input size, 320x240 .. 1920x1080",
    )
    ap.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="leave glibc's malloc thresholds alone (joint_perception.allocator)",
    )
    add_thread_arguments(ap)
    a = ap.parse_args(argv)
    try:
        resolutions = [_resolution(r) for r in a.resolutions.split(",") if r]
    except argparse.ArgumentTypeError as exc:
        ap.error(str(exc))
    if a.repeats < 1:
        ap.error("--repeats must be >= 1")
    from joint_perception.models.registry import list_models
    from joint_perception.runtime.factory import BACKENDS

    models = [m for m in a.models.split(",") if m]
    unknown = sorted(set(models) - set(list_models()))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {', '.join(list_models())}")
    if a.json is not None and a.json.is_dir():
        ap.error(f"--json {a.json} is a directory; name the file to write")
    backends = [b for b in a.backends.split(",") if b]
    bad = sorted(set(backends) - set(BACKENDS))
    if bad:
        ap.error(f"unknown backend(s) {bad}; known: {', '.join(BACKENDS)}")
    opts = BenchmarkOptions(
        models=models,
        backends=backends,
        resolutions=resolutions,
        repeats=a.repeats,
        warmup=a.warmup,
        frame=a.frame,
        work_dir=a.work_dir,
        pointcloud_baseline=not a.no_pointcloud_baseline,
        ros=a.ros,
        bag=a.bag,
        ros_frames=a.ros_frames,
        cpu=not a.no_cpu,
        scaling=a.scaling,
        threads=thread_options(a),
    )
    # the node's process settings: one OpenCV thread, freed buffers kept (allocator)
    limit_opencv_threads(1)
    if not a.no_malloc_tuning:
        keep_freed_memory()
    try:
        result = run_benchmark(opts)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 1
    print(format_table(result), end="")
    if a.json:
        atomic_write_json(a.json, result)
        print(f"JSON: {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
