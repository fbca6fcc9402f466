"""Ground truth for scoring recorded outputs: from a bag and a labelled folder, and the
recorded outputs of a replay read back from its output bag.

* segmentation labels come from a labels topic of the bag (:func:`labels_from_topic`) or a
  labelled folder such as ``../shared/data/nyuv2_test`` whose ``manifest.json`` lists the frames
  in bag order (:func:`labels_from_folder`, checked by RGB agreement);
* :func:`load_references` gathers a bag's RGB, K, depth (and labels) per stamp as
  :class:`~joint_perception.accuracy.FrameReference`;
* :func:`load_recorded_outputs` reads depth / labels / normals back from an output bag.

No ROS import: bags are read with ``rosbags``. Scoring itself is
:class:`joint_perception.accuracy.AccuracyEvaluator`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from joint_perception.accuracy import FrameReference

__all__ = ["labels_from_folder", "labels_from_topic", "load_references", "load_recorded_outputs"]


def labels_from_folder(
    folder: str | os.PathLike,
    rgbs: Sequence[np.ndarray],
    num_classes: int = 40,
    max_mean_abs_diff: float = 3.0,
) -> list[np.ndarray]:
    """Semantic GT of a labelled folder for a sequence of bag frames.

    The bags in ``../shared/data/bags`` hold test frames without labels, in the frame order of
    ``nyuv2_test/manifest.json``. The i-th bag frame is paired with the i-th manifest frame
    when their RGB images agree (mean absolute difference <= ``max_mean_abs_diff`` grey
    levels); otherwise (a bag holding a subset, e.g. ``nyuv2_test3_sqlite3``) with the folder
    frame whose RGB agrees. Pairing therefore never silently uses the wrong labels.

    Args:
        folder: e.g. ``../shared/data/nyuv2_test`` (``manifest.json`` with
            ``frames[*].index1449``, ``rgb/IIII.png``, ``label40/IIII.png``).
        rgbs: the bag's (H, W, 3) uint8 RGB frames in bag order.
        num_classes: 40 or 13 (reads ``label40/`` or ``label13/``).
        max_mean_abs_diff: RGB agreement threshold (JPEG-free bags match exactly).

    Returns:
        one (H, W) uint8 label map (0 void) per bag frame.

    Raises:
        FileNotFoundError: folder, manifest or an image missing.
        ValueError: manifest unreadable; a bag frame that matches no folder frame (names it).
    """
    from joint_perception.data.nyuv2 import read_image, read_png

    folder = Path(folder)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"labelled folder has no manifest.json: {folder}")
    try:
        stems = [f"{int(e['index1449']):04d}" for e in json.loads(manifest.read_text())["frames"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{manifest}: cannot read frames[*].index1449: {exc}") from exc
    cache: dict[str, np.ndarray] = {}

    def folder_rgb(stem: str) -> np.ndarray:
        if stem not in cache:
            cache[stem] = read_image(folder / "rgb" / f"{stem}.png")
        return cache[stem]

    def agrees(stem: str, rgb: np.ndarray) -> bool:
        ref = folder_rgb(stem)
        return ref.shape == rgb.shape and float(np.mean(cv2.absdiff(ref, rgb))) <= max_mean_abs_diff

    out = []
    for i, rgb in enumerate(rgbs):
        stem = (
            stems[i]
            if i < len(stems) and agrees(stems[i], rgb)
            else next((s for s in stems if agrees(s, rgb)), None)
        )
        if stem is None:
            raise ValueError(
                f"bag frame {i} matches no RGB image of {folder / 'rgb'}; "
                "cannot pair it with labels"
            )
        lab = read_png(folder / f"label{num_classes}" / f"{stem}.png")
        if lab.max(initial=0) > num_classes:
            raise ValueError(
                f"{folder}/label{num_classes}/{stem}.png: id {lab.max()} > {num_classes}"
            )
        out.append(lab)
    return out


def labels_from_topic(bag: str | os.PathLike, topic: str) -> dict[int, np.ndarray]:
    """Semantic GT recorded in a bag: ``{header stamp ns: (H, W) class ids}``.

    Args:
        bag: rosbag2 directory.
        topic: sensor_msgs/Image topic with ``mono8``/``8UC1``/``mono16``/``16UC1`` class ids
            (0 = void).

    Raises:
        ValueError: the topic is not in the bag, or a message has another encoding (both name
            the bag and topic).
    """
    from rosbags.highlevel import AnyReader

    from joint_perception.image_codec import decode_image

    out: dict[int, np.ndarray] = {}
    with AnyReader([Path(bag)]) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            have = ", ".join(sorted({c.topic for c in reader.connections}))
            raise ValueError(f"{bag}: no labels topic {topic!r} (bag has: {have})")
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if msg.encoding not in ("mono8", "8UC1", "mono16", "16UC1"):
                raise ValueError(
                    f"{bag} topic {topic}: labels must be mono8/8UC1/mono16/16UC1,"
                    f" got {msg.encoding!r}"
                )
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            out[stamp] = np.array(
                decode_image(
                    msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian
                ),
                copy=True,
            )
    return out


def load_references(
    bag: str | os.PathLike,
    labelled_folder: str | os.PathLike | None = None,
    num_classes: int = 40,
    topics=None,
    labels_topic: str | None = None,
) -> dict[int, FrameReference]:
    """Ground truth of every colour frame of an input bag, keyed by header stamp (ns).

    Depth and K come from the bag (16UC1 mm or 32FC1 m depth topic, colour camera_info);
    labels from a labels topic of the bag (same header stamp), or from a labelled folder
    paired in bag order (:func:`labels_from_folder`).

    Args:
        bag: rosbag2 directory.
        labelled_folder: optional labelled data set folder.
        num_classes: label set of that folder.
        topics: :class:`joint_perception.data.rosbag_io.BagTopics` (RealSense-style default).
        labels_topic: optional labels topic in the bag (see :func:`labels_from_topic`).

    Raises:
        ValueError: both label sources given; label maps whose size differs from the frames;
            as :func:`joint_perception.data.rosbag_io.iter_frames`, :func:`labels_from_folder`
            and :func:`labels_from_topic`.
    """
    from joint_perception.data.rosbag_io import BagTopics, iter_frames

    if labelled_folder is not None and labels_topic is not None:
        raise ValueError("give either a labelled folder or a labels topic, not both")
    frames = list(iter_frames(bag, topics or BagTopics()))
    if labels_topic is not None:
        by_stamp = labels_from_topic(bag, labels_topic)
        labels = [by_stamp.get(f.stamp_ns) for f in frames]
        source = f"{bag} topic {labels_topic}"
    elif labelled_folder is not None:
        labels = labels_from_folder(labelled_folder, [f.rgb for f in frames], num_classes)
        source = str(labelled_folder)
    else:
        labels, source = [None] * len(frames), ""
    refs = {}
    for f, lab in zip(frames, labels):
        if lab is not None and lab.shape != f.rgb.shape[:2]:
            raise ValueError(
                f"{source}: label map {lab.shape} does not match the bag "
                f"frame {f.rgb.shape[:2]} at stamp {f.stamp_ns}"
            )
        refs[f.stamp_ns] = FrameReference(K=f.K, rgb=f.rgb, depth=f.depth, labels=lab)
    return refs


def load_recorded_outputs(
    output_bag: str | os.PathLike, topics: Mapping[str, str]
) -> dict[int, dict[str, np.ndarray]]:
    """Decode recorded node outputs from a replay's output bag.

    Args:
        output_bag: rosbag2 directory written by ``replay``.
        topics: ``{"depth": topic, "labels": topic, "normals": topic, ...}``; each a
            sensor_msgs/Image topic (32FC1 depth, mono8/mono16 labels, 32FC3 normals).

    Returns:
        ``{header stamp ns: {name: array}}`` (first message per stamp and topic); depth is
        float32 metres with NaN invalid (as published).

    Raises:
        FileNotFoundError: no bag there.
        ImageFormatError: a message that does not decode (names the topic).
    """
    from rosbags.highlevel import AnyReader

    from joint_perception.image_codec import decode_image

    path = Path(output_bag)
    if not path.exists():
        raise FileNotFoundError(f"output bag not found: {path}")
    by_topic = {t: name for name, t in topics.items()}
    out: dict[int, dict[str, np.ndarray]] = {}
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic in by_topic]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            name = by_topic[conn.topic]
            slot = out.setdefault(stamp, {})
            if name in slot:
                continue
            arr = decode_image(
                msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian
            )
            slot[name] = np.array(arr, copy=True)
    return out
