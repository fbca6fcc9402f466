"""Accuracy of a replay: the recorded outputs scored against the input bag's ground truth.

Each bag frame counts once (its first output; looped repeats are not re-counted), with
:class:`joint_perception.accuracy.AccuracyEvaluator`; a few frames spread over the
bag become the report's samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from joint_perception.evaluation.replay.bag_input import InputFrame
from joint_perception.evaluation.replay.options import ReplayOptions
from joint_perception.evaluation.replay.topics import SCORED_OUTPUTS, ReplayTopics, namespaced


def _references(opts: ReplayOptions, num_classes: int) -> dict | None:
    """Ground truth per stamp, or None when the bag has none and no labels were asked for.

    Raises:
        ValueError: from :func:`joint_perception.evaluation.references.load_references` when
            labels were asked for (``labels_dir`` / ``labels_topic``) or a depth topic other
            than the default was named.
    """
    from joint_perception.evaluation.references import load_references

    named_depth = opts.topics.depth != ReplayTopics.depth  # ground truth the user named
    try:
        refs = load_references(
            opts.bag, opts.labels_dir, num_classes, opts.topics.bag_topics(), opts.labels_topic
        )
    except ValueError:
        if opts.labels_dir is not None or opts.labels_topic is not None or named_depth:
            raise
        return None
    if named_depth and not any(r.depth is not None for r in refs.values()):
        raise ValueError(
            f"{opts.bag}: no depth on {opts.topics.depth!r} (a 16UC1 mm or 32FC1 m image "
            "topic of the bag, stamped like the colour images)"
        )
    return refs


def first_outputs(
    schedule: list[tuple[int, int]], sent: dict[int, float], outputs: dict
) -> dict[int, int]:
    """``{bag index: stamp of its first sent frame with an output}``."""
    first: dict[int, int] = {}
    for idx, stamp in schedule:
        if stamp in sent and stamp in outputs and idx not in first:
            first[idx] = stamp
    return first


def sample_indices(n_frames: int, n_samples: int) -> set[int]:
    """Up to ``n_samples`` bag indices spread evenly over ``n_frames`` (first and last)."""
    if n_samples <= 0:
        return set()
    picks = np.linspace(0, n_frames - 1, min(n_samples, n_frames)).round().astype(int)
    return set(picks.tolist())


def _report_sample(idx: int, ref, out: dict):
    """The report sample of bag frame ``idx``: input, prediction, ground truth, error."""
    from joint_perception.accuracy import depth_error_map
    from joint_perception.evaluation.report import ReportSample
    from joint_perception.geometry import scale_intrinsics

    d = out.get("depth")
    K = ref.K if d is None else scale_intrinsics(ref.K, ref.rgb.shape[:2], d.shape)
    err = depth_error_map(d, ref.depth) if d is not None and ref.depth is not None else None
    return ReportSample(
        f"bag frame {idx}",
        ref.rgb,
        d,
        ref.depth,
        out.get("labels"),
        out.get("normals"),
        err,
        K,
    )


def score_outputs(
    opts: ReplayOptions,
    frames: list[InputFrame],
    schedule: list[tuple[int, int]],
    sent: dict[int, float],
    output_bag: Path,
    num_classes: int,
    class_names: list[str] | None,
) -> tuple[dict | None, list]:
    """Accuracy of the first output of each bag frame (looped repeats are not re-counted) and
    the report samples. Returns ``(accuracy result or None, samples)``."""
    from joint_perception.accuracy import AccuracyEvaluator
    from joint_perception.evaluation.references import load_recorded_outputs

    refs = _references(opts, num_classes)
    if refs is None:
        return None, []
    topics = {name: namespaced(opts.namespace, rel) for name, rel in SCORED_OUTPUTS.items()}
    outputs = load_recorded_outputs(output_bag, topics)
    first = first_outputs(schedule, sent, outputs)
    names = class_names if class_names and len(class_names) == num_classes else None
    ev = AccuracyEvaluator(num_classes, names, max_depth=opts.max_depth)
    picks = sample_indices(len(frames), opts.report_samples)
    samples = []
    for idx in sorted(first):
        ref = refs.get(frames[idx].stamp_ns)
        out = outputs[first[idx]]
        ev.add(frames[idx].stamp_ns, out.get("depth"), out.get("labels"), out.get("normals"), ref)
        if idx in picks and ref is not None and ref.rgb is not None:
            samples.append(_report_sample(idx, ref, out))
    return ev.result(), samples


def depth_metrics(accuracy: dict | None) -> dict | None:
    """The summary's ``depth_metrics``: aggregate depth metrics and the frame count."""
    depth = (accuracy or {}).get("aggregate", {}).get("depth")
    return {**depth, "frames": len(accuracy["per_frame"])} if depth else None
