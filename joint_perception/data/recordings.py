"""Fine-tuning data from a robot's own rosbag2 recording: RGB + sensor depth + CameraInfo
(+ optional labels), so a team can adapt metric depth to its camera without labelling.

Frames come from :func:`joint_perception.data.rosbag_io.iter_frames` (RGB paired with the
latest CameraInfo and the depth image nearest in time; 16UC1 millimetres or 32FC1 metres are
converted to float metres there). Depth is assumed registered to the colour image (e.g. a
RealSense ``aligned_depth_to_color`` topic); when its size differs from the RGB image it is
resized with nearest neighbour, which is only correct for a depth image aligned to the colour
camera — the reader says so in its error otherwise. Frames are decoded once at start-up
(``stride`` / ``max_frames`` bound the memory) so the data set is map-style and seekable.

Surface-normal targets come from the sensor depth itself (``normals=True``): local planes fitted
to its disparity (:func:`joint_perception.data.sevenscenes.normals.normals_from_disparity_planes`,
the same estimator as for the 7-Scenes frames), NaN near depth discontinuities and holes, so
a fine-tune on a robot's bag trains all three heads of the default model (labels from the
teacher, ``teacher_labels`` in the recipe: config/train/finetune_rosbag.yaml).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from joint_perception.data.sevenscenes.normals import normals_from_disparity_planes
from joint_perception.data.transforms import make_sample

__all__ = ["RosbagRecording"]


class RosbagRecording:
    """Map-style data set over the frames of one rosbag2 (MCAP or sqlite3).

    Args:
        bag: bag directory.
        topics: a ``rosbag_io.BagTopics`` (None = its defaults: RealSense-style names).
        use_compressed: read the ``CompressedImage`` colour topic.
        stride: keep every ``stride``-th frame.
        max_frames: stop after this many kept frames (None = all).
        require_depth: drop frames without a depth image.
        normals: also give normal targets estimated from each frame's depth (optical frame of
            the colour camera, unit length; 0 = no estimate) — ``has_normals`` is then true for
            frames with depth.

    Attributes:
        targets: the tasks the frames have ground truth for (``depth`` [, ``normals``], plus
            ``segmentation`` when the bag carries labels).

    Raises:
        FileNotFoundError: no bag; ValueError: no usable frame (names the bag and topics).
    """

    def __init__(
        self,
        bag,
        topics=None,
        use_compressed: bool = False,
        stride: int = 1,
        max_frames: int | None = None,
        require_depth: bool = True,
        normals: bool = False,
    ):
        from joint_perception.data import rosbag_io

        self.bag = Path(bag)
        if not self.bag.exists():
            raise FileNotFoundError(f"rosbag not found: {self.bag}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        kwargs = {"use_compressed": use_compressed}
        if topics is not None:
            kwargs["topics"] = topics
        self.samples = []
        seen = 0
        for n, frame in enumerate(rosbag_io.iter_frames(self.bag, **kwargs)):
            if n % stride:
                continue
            seen += 1
            depth = getattr(frame, "depth", None)
            if depth is None and require_depth:
                continue
            rgb = np.asarray(frame.rgb)
            h, w = rgb.shape[:2]
            if depth is not None:
                depth = np.asarray(depth, np.float32)
                if depth.shape != (h, w):
                    depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
            labels = getattr(frame, "labels", None)
            target_normals = None
            if normals and depth is not None:
                target_normals = normals_from_disparity_planes(depth, np.asarray(frame.K, float))
            self.samples.append(
                make_sample(rgb, frame.K, depth, labels, target_normals, name=f"{frame.stamp_ns}")
            )
            if max_frames is not None and len(self.samples) >= max_frames:
                break
        if not self.samples:
            raise ValueError(
                f"{self.bag}: no frame with RGB + CameraInfo{' + depth' if require_depth else ''} "
                f"({seen} RGB frames read); check the topic names"
            )

        self.targets = ("depth",) + (("normals",) if normals else ())
        if any(s["has_labels"] for s in self.samples):
            self.targets += ("segmentation",)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
