"""The measured summary of a replay: what went in and came out, how fast, on what set-up.

:func:`summarise` pairs sends with output arrivals by header stamp (frames in/out/dropped,
end-to-end latency, the ros2_benchmark fields of
:func:`joint_perception.evaluation.rates.performance_fields`) and adds what the node reports
in its last ``/diagnostics`` message (stage times, device, backend, model).
"""

from __future__ import annotations

import re

import numpy as np

from joint_perception.evaluation.rates import performance_fields
from joint_perception.evaluation.replay.bag_input import InputFrame
from joint_perception.evaluation.replay.recorder import Recorder
from joint_perception.evaluation.replay.topics import primary_output

_NODE_KEYS = (
    "backend",
    "backend_reason",
    "device",
    "model",
    "frames_received",
    "frames_processed",
    "frames_dropped",
    "frames_skipped",
)


def _percentiles(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"p50_ms": None, "p95_ms": None, "max_ms": None, "mean_ms": None}
    a = np.asarray(values_ms)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "max_ms": float(a.max()),
        "mean_ms": float(a.mean()),
    }


def last_node_diagnostics(recorder: Recorder, node_fqn: str) -> dict[str, str]:
    """Key/values of the newest recorded ``/diagnostics`` status of node ``node_fqn``."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.serialization import deserialize_message

    from joint_perception.ros.diagnostics import status_values

    for _, raw in reversed(recorder.diagnostics):
        arr = deserialize_message(raw, DiagnosticArray)
        for status in arr.status:
            if status.name.endswith(node_fqn):
                return status_values(status)
    return {}


def _image_size(image_cdr: bytes, msgtype: str) -> list[int] | None:
    """[height, width] of a raw Image (None for CompressedImage, whose size needs decoding)."""
    if not msgtype.endswith("/Image"):
        return None
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    msg = deserialize_message(image_cdr, Image)
    return [int(msg.height), int(msg.width)]


def model_metadata(diag: dict[str, str]):
    """The node's model metadata, from the path in its diagnostics (``"arch (path)"``)."""
    from joint_perception.metadata import load_metadata

    m = re.search(r"\((.+)\)\s*$", diag.get("model", ""))
    if not m:
        return None
    try:
        return load_metadata(m.group(1))
    except (FileNotFoundError, ValueError):
        return None


def _stage_times(diag: dict[str, str]) -> dict[str, float]:
    """``{stage: p50 ms}`` from the diagnostics keys ``stage_<name>_p50_ms``."""
    return {
        k[len("stage_") : -len("_p50_ms")]: float(v)
        for k, v in diag.items()
        if k.startswith("stage_") and k.endswith("_p50_ms")
    }


def _performance(sent: dict[int, float], received: dict[int, float], process: dict | None):
    """The ros2_benchmark fields plus the node's CPU and memory (when measured)."""
    perf = performance_fields(sent, received)
    if process:
        perf.update(
            NODE_CPU_PERCENT=process["cpu_percent"],
            NODE_PEAK_RSS_MB=process["peak_rss_mb"],
        )
    return perf


def _outputs(recorder: Recorder, received: dict, arrivals: dict, all_sent: set[int]) -> dict:
    """Per active output: topic, messages, frame_ids and whether every stamp was sent."""
    return {
        rel: {
            "topic": recorder.output_topics[rel],
            "count": len(received[rel]),
            "frame_ids": sorted(recorder.frame_ids.get(rel, set())),
            "stamps_match_input": set(arrivals[rel]) <= all_sent,
        }
        for rel in arrivals
    }


def summarise(
    frames: list[InputFrame],
    sent: dict[int, float],
    recorder: Recorder,
    node_fqn: str,
    elapsed_s: float,
    image_msgtype: str = "sensor_msgs/msg/Image",
    process: dict | None = None,
    all_sent: set[int] | None = None,
) -> dict:
    """The replay summary (JSON-ready dict) of the frames in ``sent``.

    Keys: frames in/out/dropped, per-output topic checks, latency percentiles, node stage
    times, ``performance`` (the ros2_benchmark fields of
    :func:`joint_perception.evaluation.rates.performance_fields` plus the node's CPU and
    memory from ``process``), device/backend/model and input/network resolution.
    Accuracy is added by :func:`joint_perception.evaluation.replay.replay` from the output
    bag. ``all_sent``: every stamp sent in the session (peak trials), for the "stamps match
    the input" check; default ``sent``.
    """
    all_sent = set(sent) if all_sent is None else set(all_sent)
    active = recorder.active_outputs()
    primary = primary_output(active)
    arrivals = {rel: recorder.arrivals(rel) for rel in active}
    received = {rel: {s: t for s, t in arrivals[rel].items() if s in sent} for rel in active}
    out_stamps = set(received.get(primary, {})) if primary else set()
    latency = [1e3 * (received[primary][s] - sent[s]) for s in sorted(out_stamps)]
    all_out = [s for s in sent if all(s in received[rel] for rel in active)]
    latency_all = [1e3 * (max(received[rel][s] for rel in active) - sent[s]) for s in all_out]

    diag = last_node_diagnostics(recorder, node_fqn)
    meta = model_metadata(diag)
    return {
        "frames_in": len(sent),
        "frames_out": len(out_stamps),
        "frames_dropped": len(sent) - len(out_stamps),
        "unexpected_stamps": sum(len(set(arrivals[rel]) - all_sent) for rel in active),
        "elapsed_s": elapsed_s,
        "input_stamps_ns": sorted(sent),
        "input_frame_ids": sorted({f.frame_id for f in frames}),
        "outputs": _outputs(recorder, received, arrivals, all_sent),
        "primary_output": primary,
        "latency_ms": _percentiles(latency),
        "latency_all_outputs_ms": _percentiles(latency_all),
        "stages_p50_ms": _stage_times(diag),
        "performance": _performance(sent, received.get(primary, {}), process),
        "process_monitor": process,
        "device": diag.get("device"),
        "backend": diag.get("backend"),
        "model": diag.get("model"),
        "input_resolution": _image_size(frames[0].image_cdr, image_msgtype) if frames else None,
        "network_resolution": [meta.input_height, meta.input_width] if meta else None,
        "node": {k: diag[k] for k in _NODE_KEYS if k in diag},
    }
