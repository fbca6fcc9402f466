"""Calibration / validation frames for INT8 quantisation and the accuracy gate.

INT8 scales computed from the wrong data silently ruin accuracy; the most common mistake in
TensorRT nodes is calibrating on random tensors. :class:`CalibrationFrames` therefore only
comes from real images (a rosbag2 recording, a data set, or arrays the caller has), and every
frame is pre-processed by the runtime's own
:func:`joint_perception.runtime.processing.preprocess_image` (RGB uint8 -> resize to the network
input size, INTER_AREA when shrinking, INTER_LINEAR when enlarging -> float32 in [0, 1], NCHW),
so calibration sees exactly what the engine will see. Random frames are
refused unless ``allow_random=True``, and even then an ERROR-level message is logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from joint_perception.runtime.processing import preprocess_image

LOG = logging.getLogger(__name__)

_IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


@dataclass
class CalibrationFrames:
    """A stack of pre-processed real frames.

    Attributes:
        images: (N, 3, h, w) float32 in [0, 1], the network input.
        source: where they came from (bag path + topic, data set name + split...).
        is_random: True only for :meth:`random` frames (never for real data).
    """

    images: np.ndarray
    source: str
    is_random: bool = False

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3 or self.images.dtype != np.float32:
            raise ValueError(
                f"calibration images must be (N, 3, h, w) float32, got {self.images.shape} {self.images.dtype}"
            )
        if len(self.images) == 0:
            raise ValueError(f"no calibration frames from {self.source}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def batches(self, batch_size: int = 1) -> Iterator[np.ndarray]:
        """Yield (b, 3, h, w) float32 C-contiguous batches in order."""
        for i in range(0, len(self.images), batch_size):
            yield np.ascontiguousarray(self.images[i : i + batch_size])

    def describe(self) -> dict:
        """JSON-able provenance, recorded in the engine sidecar."""
        return {
            "source": self.source,
            "frames": len(self),
            "size_hw": list(self.size_hw),
            "random": self.is_random,
        }

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_rgb(
        cls,
        frames: Iterable[np.ndarray],
        size_hw: tuple[int, int],
        max_frames: int = 64,
        source: str = "arrays",
    ) -> CalibrationFrames:
        """From (H, W, 3) uint8 RGB frames (first ``max_frames``).

        Raises:
            ValueError: ``max_frames`` < 1, a frame is not RGB uint8, or no frames.
        """
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        out = []
        for rgb in frames:
            out.append(preprocess_image(rgb, size_hw)[0])
            if len(out) >= max_frames:
                break
        if not out:
            raise ValueError(f"no calibration frames from {source}")
        return cls(np.stack(out), source)

    @classmethod
    def from_bag(
        cls,
        bag: str | os.PathLike,
        size_hw: tuple[int, int],
        max_frames: int = 64,
        topic: str | None = None,
    ) -> CalibrationFrames:
        """From the colour images of a rosbag2 recording (sqlite3 or MCAP storage).

        Args:
            bag: rosbag2 directory.
            size_hw: network input (h, w).
            max_frames: at most this many frames, the first ones in time order.
            topic: image topic (``sensor_msgs/Image`` or ``CompressedImage``); default the first
                raw colour image topic, else the first compressed one.

        Raises:
            FileNotFoundError: no such bag directory.
            ValueError: no image topic / the topic is missing / no frames (names the bag).
        """
        path = Path(bag).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"calibration bag not found: {path}")
        frames = _iter_bag_rgb(path, topic)
        return cls.from_rgb(
            frames, size_hw, max_frames, source=f"bag {path} topic {topic or 'auto'}"
        )

    @classmethod
    def from_dataset(
        cls,
        name: str,
        size_hw: tuple[int, int],
        max_frames: int = 64,
        root: str | os.PathLike | None = None,
        split: str = "train",
        **cfg,
    ) -> CalibrationFrames:
        """From ``joint_perception.data.registry.build_dataset(name, split, root=..., **cfg)``.

        Frames are taken evenly spaced over the split (so a 64-frame calibration set sees the
        whole split, not just its first scene).

        Raises:
            ValueError: unknown data set or an empty split.
        """
        from joint_perception.data.registry import build_dataset

        if root is not None:
            cfg["root"] = root
        ds = build_dataset(name, split, **cfg)
        n = len(ds)
        if n == 0:
            raise ValueError(f"data set {name!r} split {split!r} is empty")
        idx = np.unique(np.linspace(0, n - 1, num=min(max_frames, n)).round().astype(int))
        return cls.from_rgb(
            (ds[int(i)]["rgb"] for i in idx),
            size_hw,
            max_frames,
            source=f"dataset {name} split {split}",
        )

    @classmethod
    def random(
        cls, size_hw: tuple[int, int], n: int = 8, seed: int = 0, allow_random: bool = False
    ) -> CalibrationFrames:
        """Uniform random frames: only for plumbing tests, never for real calibration.

        Raises:
            ValueError: unless ``allow_random=True`` (then an ERROR is logged anyway).
        """
        if not allow_random:
            raise ValueError(
                "refusing to calibrate on random data: INT8 scales from noise ruin accuracy. "
                "Give real frames (--calib-bag or --calib-dataset) or pass allow_random=True for tests"
            )
        LOG.error(
            "calibrating on RANDOM data (allow_random=True): the INT8 engine's accuracy is meaningless"
        )
        rng = np.random.default_rng(seed)
        images = rng.random((n, 3, int(size_hw[0]), int(size_hw[1])), dtype=np.float32)
        return cls(images, f"random (seed {seed})", is_random=True)


def _iter_bag_rgb(path: Path, topic: str | None) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames of one image topic of a rosbag2, in time order."""
    from rosbags.highlevel import AnyReader

    from joint_perception.image_codec import decode_compressed, image_to_rgb8

    with AnyReader([path]) as reader:
        images = [c for c in reader.connections if c.msgtype in _IMAGE_TYPES]
        if topic is None:
            # Prefer raw colour images; depth images (16UC1/32FC1) are skipped by topic name.
            colour = [c for c in images if "depth" not in c.topic]
            colour.sort(key=lambda c: (c.msgtype != "sensor_msgs/msg/Image", c.topic))
            if not colour:
                raise ValueError(
                    f"{path}: no colour image topic; topics: {sorted(c.topic for c in reader.connections)}"
                )
            conns = [colour[0]]
        else:
            conns = [c for c in images if c.topic == topic]
            if not conns:
                raise ValueError(
                    f"{path}: no image topic {topic!r}; image topics: {sorted(c.topic for c in images)}"
                )
        LOG.info("calibration frames from %s topic %s", path, conns[0].topic)
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.msgtype.endswith("CompressedImage"):
                yield decode_compressed(msg.format, msg.data)
            else:
                yield image_to_rgb8(
                    msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian
                )
