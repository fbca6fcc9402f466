"""CPU time per frame of the node's work, measured so that a shared machine cannot skew it.

Wall-time medians on a 2-core machine shared with other jobs mostly measure the other jobs.
Here every figure is CPU time: ``time.thread_time`` for work done in the calling thread
(pre/post-processing, colour, cloud, messages, serialisation) and ``time.process_time`` for
the network (ONNX Runtime's or torch's intra-op threads included). Variants that are compared
run *interleaved* (A, B, A, B ...), so a load change hits both alike; medians are reported.

* :func:`frame_cpu`: one frame of every output through the node's per-frame path without the
  node: decode, preprocess, network, postprocess, colour, cloud, message building
  (``ros.conversions``) and serialisation (``rclpy.serialization.serialize_message``, the copy
  ``publish`` makes before DDS), in two variants: ``reused`` (outputs written into
  :class:`joint_perception.buffers.OutputBuffers`, messages over those buffers, CameraInfo
  cached) and ``allocating`` (fresh arrays and copying message builders every frame);
* :func:`conv_peak`: a real dense convolution (3x3, 64 -> 64 channels, 56x56, fp32) timed in
  the same run, the reference for the network's achieved GFLOP/s;
* :func:`resolution_scaling`: non-network CPU per megapixel from 320x240 to 1920x1080 input.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

#: Input sizes (H, W) of the per-resolution scaling.
SCALING_SIZES = ((240, 320), (480, 640), (720, 1280), (1080, 1920))


def interleaved_cpu_ms(
    fns: dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2
) -> dict[str, dict[str, float]]:
    """CPU time of each callable, the callables run in turn ``repeats`` times (interleaved).

    Returns:
        ``{name: {"thread_ms", "process_ms", "thread_min_ms", "process_min_ms"}}``: medians
        and minima over the repetitions, ms.

    Raises:
        ValueError: ``repeats < 1``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    th: dict[str, list[float]] = {k: [] for k in fns}
    pr: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, p0 = time.thread_time_ns(), time.process_time_ns()
            fn()
            th[name].append((time.thread_time_ns() - t0) / 1e6)
            pr[name].append((time.process_time_ns() - p0) / 1e6)
    return {
        k: {
            "thread_ms": statistics.median(th[k]),
            "process_ms": statistics.median(pr[k]),
            "thread_min_ms": min(th[k]),
            "process_min_ms": min(pr[k]),
        }
        for k in fns
    }


def conv_peak(repeats: int = 10, threads: int = 1) -> dict[str, float]:
    """GFLOP/s of a real 3x3 convolution (1 x 64 x 56 x 56 -> 64 channels, fp32, torch) in
    ``threads`` intra-op threads, from the process CPU time of the fastest of ``repeats``
    runs (``2 * 9 * 64 * 64 * 56 * 56`` FLOPs per run).

    Returns:
        ``{"gflops", "cpu_ms", "threads", "flops"}``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        x = torch.rand(1, 64, 56, 56)
        w = torch.rand(64, 64, 3, 3)
        flops = 2 * 9 * 64 * 64 * 56 * 56
        with torch.inference_mode():
            t = interleaved_cpu_ms(
                {"conv": lambda: torch.nn.functional.conv2d(x, w, padding=1)}, repeats, 2
            )["conv"]["process_min_ms"]
    finally:
        torch.set_num_threads(before)
    return {"gflops": flops / (t * 1e6), "cpu_ms": t, "threads": int(threads), "flops": flops}


class _Publisher:
    """The message side of the node's per-frame work, without a node: build every output
    message (``ros.conversions``) and serialise it (what ``publish`` does in the caller)."""

    def __init__(self, reuse: bool):
        from rclpy.serialization import serialize_message
        from std_msgs.msg import Header

        from joint_perception.ros import conversions

        self.conv = conversions
        self.serialize = serialize_message
        self.header = Header(frame_id="camera_color_optical_frame")
        self.reuse = reuse
        self.msgs: dict[str, object] = {}
        self.info_cache = conversions.ScaledCameraInfoCache()

    def publish(self, result, info, buffers, packed, color) -> int:
        c, h = self.conv, self.header
        out_h, out_w = result.depth.shape
        if self.reuse:
            m = self.msgs
            pairs = [
                ("depth", result.depth, "32FC1"),
                ("labels", result.labels, "mono8"),
                ("color", color, "rgb8"),
                ("normals", result.normals, "32FC3"),
                ("confidence", result.confidence, "32FC1"),
            ]
            for name, arr, enc in pairs:
                m[name] = c.image_msg_over_buffer(arr, buffers.storage(name), enc, h, m.get(name))
            m["points"] = c.cloud_msg_over_buffer(
                packed, buffers.storage("points"), h, m.get("points")
            )
            m["info"] = self.info_cache.get(info, result.K, out_h, out_w, h)
            msgs = list(m.values())
        else:
            msgs = [
                c.array_to_image_msg(result.depth, "32FC1", h),
                c.array_to_image_msg(result.labels, "mono8", h),
                c.array_to_image_msg(color, "rgb8", h),
                c.array_to_image_msg(result.normals, "32FC3", h),
                c.array_to_image_msg(result.confidence, "32FC1", h),
                c.cloud_to_msg(packed, h),
                c.scaled_camera_info(info, out_h, out_w),
            ]
        return sum(len(self.serialize(msg)) for msg in msgs)


def frame_cpu(pipeline, rgb: np.ndarray, K: np.ndarray, repeats: int = 10, warmup: int = 2) -> dict:
    """CPU per frame of every output at the input resolution, ``reused`` vs ``allocating``
    (module doc), interleaved with the network on its own.

    Args:
        pipeline: :class:`joint_perception.runtime.processing.Pipeline`.
        rgb: (H, W, 3) uint8 input frame; K: its (3, 3) intrinsics.

    Returns:
        ``{"size", "network_process_ms", "reused": {...}, "allocating": {...},
        "bytes_serialised"}``; each variant holds ``non_network_thread_ms`` (median thread
        CPU of everything but the network, in the calling thread) and per-stage medians.
    """
    from std_msgs.msg import Header

    from joint_perception.buffers import OutputBuffers
    from joint_perception.colormap import colorize_labels, label_palette
    from joint_perception.image_codec import decode_image
    from joint_perception.pointcloud import pack_depth
    from joint_perception.ros import conversions

    h, w = rgb.shape[:2]
    raw = np.ascontiguousarray(rgb).tobytes()
    palette = label_palette(pipeline.metadata.num_classes)
    info = conversions.make_camera_info(K, h, w, Header())
    batch = pipeline.preprocess(rgb)
    pred = pipeline.backend.predict(batch)
    pubs = {"reused": _Publisher(True), "allocating": _Publisher(False)}
    buffers = OutputBuffers()
    stages: dict[str, dict[str, list[float]]] = {k: {} for k in pubs}
    serialised = {}

    def timed(variant: str, stage: str, fn):
        t0 = time.thread_time_ns()
        out = fn()
        stages[variant].setdefault(stage, []).append((time.thread_time_ns() - t0) / 1e6)
        return out

    def one(variant: str) -> Callable[[], None]:
        reuse = variant == "reused"

        def run():
            frame = timed(variant, "decode", lambda: decode_image("rgb8", h, w, 3 * w, raw))
            timed(variant, "preprocess", lambda: pipeline.preprocess(frame))
            if reuse:
                res = timed(
                    variant,
                    "postprocess",
                    lambda: pipeline.postprocess(pred, K, (h, w), buffers=buffers, palette=palette),
                )
                color = res.color
                packed = timed(
                    variant,
                    "pointcloud",
                    lambda: pack_depth(res.depth, res.K, frame, res.labels, buffers=buffers),
                )
            else:
                res = timed(variant, "postprocess", lambda: pipeline.postprocess(pred, K, (h, w)))
                color = timed(variant, "colorize", lambda: colorize_labels(res.labels, palette))
                packed = timed(
                    variant, "pointcloud", lambda: pack_depth(res.depth, res.K, frame, res.labels)
                )
            serialised[variant] = timed(
                variant,
                "messages_and_serialise",
                lambda: pubs[variant].publish(res, info, buffers, packed, color),
            )

        return run

    cpu = interleaved_cpu_ms(
        {
            "network": lambda: pipeline.backend.predict(batch),
            "reused": one("reused"),
            "allocating": one("allocating"),
        },
        repeats,
        warmup,
    )
    out = {
        "size": [h, w],
        "network_process_ms": cpu["network"]["process_ms"],
        "network_thread_ms": cpu["network"]["thread_ms"],
        "bytes_serialised": serialised.get("reused"),
    }
    for variant in pubs:
        per_stage = {k: statistics.median(v[warmup:] or v) for k, v in stages[variant].items()}
        out[variant] = {
            "non_network_thread_ms": cpu[variant]["thread_ms"],
            "non_network_process_ms": cpu[variant]["process_ms"],
            "stages_thread_ms": per_stage,
        }
    return out


def resolution_scaling(
    pipeline,
    rgb: np.ndarray,
    K: np.ndarray,
    sizes: Sequence[tuple[int, int]] = SCALING_SIZES,
    repeats: int = 5,
) -> list[dict]:
    """:func:`frame_cpu` at every input size (the frame resized, K scaled), with
    ``reused_ms_per_mp`` and ``allocating_ms_per_mp`` (non-network thread CPU per megapixel)."""
    from joint_perception.geometry import scale_intrinsics

    rows = []
    for hw in sizes:
        img = cv2.resize(rgb, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
        r = frame_cpu(pipeline, img, scale_intrinsics(K, rgb.shape[:2], hw), repeats, 1)
        mp = hw[0] * hw[1] / 1e6
        r["reused_ms_per_mp"] = r["reused"]["non_network_thread_ms"] / mp
        r["allocating_ms_per_mp"] = r["allocating"]["non_network_thread_ms"] / mp
        rows.append(r)
    return rows


def format_cpu_tables(cpu: dict) -> str:
    """Markdown: per-stage thread CPU of both variants at the frame size, the network against
    the conv peak, and the per-resolution scaling."""
    f = cpu["frame"]
    lines = [
        f"CPU time per frame (thread CPU of the calling thread; the network in process CPU), "
        f"input {f['size'][1]}x{f['size'][0]}, every output, interleaved medians:",
        "",
        "| variant | " + " | ".join(f["reused"]["stages_thread_ms"]) + " | non-network |",
        "|---|" + "---|" * (len(f["reused"]["stages_thread_ms"]) + 1),
    ]
    for v in ("allocating", "reused"):
        s = f[v]["stages_thread_ms"]
        lines.append(
            f"| {v} | "
            + " | ".join(f"{s.get(k, 0.0):.2f}" for k in f["reused"]["stages_thread_ms"])
            + f" | {f[v]['non_network_thread_ms']:.2f} |"
        )
    a, r = f["allocating"]["non_network_thread_ms"], f["reused"]["non_network_thread_ms"]
    lines += [
        "",
        f"Network: {f['network_process_ms']:.2f} ms process CPU per frame; node work per frame "
        f"(network + reused non-network): {f['network_process_ms'] + r:.2f} ms; reused vs "
        f"allocating non-network: {a / r:.2f}x less CPU.",
    ]
    if "conv_peak" in cpu:
        p = cpu["conv_peak"]
        lines.append(
            f"Conv peak (3x3 conv 64->64 at 56x56, {p['threads']} thread): {p['gflops']:.1f} "
            f"GFLOP/s; the network: {cpu['network_gflops']:.1f} GFLOP/s = "
            f"{100 * cpu['network_gflops'] / p['gflops']:.0f} % of it."
        )
        d = cpu.get("default_outputs")
        if d:
            lines.append(
                f"The network computing only what the node publishes by default "
                f"({', '.join(d['outputs'])}; the rest of the graph pruned): "
                f"{d['process_ms']:.2f} ms vs {d['all_outputs_process_ms']:.2f} ms for every "
                f"output, interleaved = {d['gflops']:.1f} GFLOP/s = "
                f"{100 * d['gflops'] / p['gflops']:.0f} % of the conv peak."
            )
    if cpu.get("scaling"):
        lines += [
            "",
            "| input | non-network reused (ms) | per MP | allocating (ms) | per MP |",
            "|---|---|---|---|---|",
        ]
        for row in cpu["scaling"]:
            lines.append(
                f"| {row['size'][1]}x{row['size'][0]} | "
                f"{row['reused']['non_network_thread_ms']:.2f} | {row['reused_ms_per_mp']:.2f} | "
                f"{row['allocating']['non_network_thread_ms']:.2f} | "
                f"{row['allocating_ms_per_mp']:.2f} |"
            )
    return "\n".join(lines) + "\n"
