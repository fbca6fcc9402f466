"""The frames to replay: a bag's images, each with its CameraInfo, kept as raw CDR.

Messages are published unchanged, so header stamps and frame_ids are the recorded ones; a
frame sent again with another stamp (a looped pass) is re-stamped by
:meth:`InputFrame.restamped`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from joint_perception.evaluation.rates import restamp_cdr
from joint_perception.evaluation.replay.cdr import header_from_cdr
from joint_perception.evaluation.replay.topics import ReplayTopics


@dataclass
class InputFrame:
    """One image to publish with its CameraInfo (same stamp, else the latest before), raw CDR."""

    bag_time_ns: int
    stamp_ns: int
    frame_id: str
    image_cdr: bytes
    info_cdr: bytes | None

    def restamped(self, stamp_ns: int) -> tuple[bytes, bytes | None]:
        """``(image, camera_info)`` CDR with the image stamped ``stamp_ns`` and the CameraInfo
        shifted by the same amount (unchanged when ``stamp_ns`` is the recorded stamp)."""
        image, info = self.image_cdr, self.info_cdr
        if stamp_ns == self.stamp_ns:
            return image, info
        image = restamp_cdr(image, stamp_ns)
        if info is not None:
            info = restamp_cdr(info, header_from_cdr(info)[0] + stamp_ns - self.stamp_ns)
        return image, info


# (bag time ns, stamp ns, frame_id, image CDR, latest CameraInfo CDR before it)
_RawImage = tuple[int, int, str, bytes, bytes | None]


def _read_bag(
    bag: Path, image_topic: str, info_topic: str
) -> tuple[str, dict[int, bytes], list[_RawImage]]:
    """``(image msgtype, {stamp: CameraInfo CDR}, images in bag order)`` of a rosbag2."""
    from rosbags.highlevel import AnyReader

    with AnyReader([bag]) as reader:
        conns = [c for c in reader.connections if c.topic in (image_topic, info_topic)]
        have = ", ".join(sorted({c.topic for c in reader.connections}))
        for topic in (image_topic, info_topic):  # the node skips every image without K
            if not any(c.topic == topic for c in conns):
                raise ValueError(f"{bag}: no topic {topic!r} (bag has: {have})")
        msgtype = next(c.msgtype for c in conns if c.topic == image_topic)
        infos: dict[int, bytes] = {}
        images: list[_RawImage] = []
        last_info: bytes | None = None
        for conn, t, raw in reader.messages(connections=conns):
            stamp, frame_id = header_from_cdr(raw)
            if conn.topic == info_topic:
                last_info = infos[stamp] = bytes(raw)
            else:
                images.append((t, stamp, frame_id, bytes(raw), last_info))
    return msgtype, infos, images


def _pair_camera_info(infos: dict[int, bytes], images: list[_RawImage]) -> list[InputFrame]:
    """Each image with the CameraInfo of its stamp (drivers may write it just after the
    image), else the latest one before it, else the first one in the bag."""
    first_info = next(iter(infos.values()), None)
    frames = []
    for t, stamp, frame_id, raw, before in images:
        info = infos.get(stamp, before if before is not None else first_info)
        frames.append(InputFrame(t, stamp, frame_id, raw, info))
    return frames


def load_input_frames(
    bag: str | os.PathLike, topics: ReplayTopics | None = None, compressed: bool = False
) -> tuple[list[InputFrame], str]:
    """Read the images (and the CameraInfo before each) of a rosbag2, as raw CDR.

    Returns:
        ``(frames, image_msgtype)`` in bag order; ``image_msgtype`` is
        ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.

    Raises:
        FileNotFoundError: no such bag.
        ValueError: the image or CameraInfo topic is not in the bag (message lists its
            topics).
    """
    topics = topics or ReplayTopics()
    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    msgtype, infos, images = _read_bag(bag, topics.input_image(compressed), topics.camera_info)
    return _pair_camera_info(infos, images), msgtype
