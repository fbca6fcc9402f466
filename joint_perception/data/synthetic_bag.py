"""Write a RealSense-style rosbag2 of synthetic scenes (the demo's input; no real data needed).

The bag has the five topics of ``../shared/data/bags`` (:class:`~.rosbag_io.BagTopics`):
rgb8 image, JPEG CompressedImage (quality 90), colour camera_info (plumb_bob, zero
distortion), aligned depth as 16UC1 millimetres (exact synthetic depth rounded to 1 mm,
0 beyond 65.535 m) and its camera_info, all with frame_id ``camera_color_optical_frame``
and header stamps ``start_ns + i / rate_hz`` (bag receive time = header stamp).

Console script: ``make_synthetic_bag --out DIR [--frames N] [--storage mcap|sqlite3]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

from joint_perception.data.rosbag_io import (
    CAMERA_INFO,
    COMPRESSED,
    IMAGE,
    BagTopics,
    BagWriter,
    camera_info_msg,
    compressed_image_msg,
    image_msg,
)
from joint_perception.data.synthetic import SyntheticScenes

FRAME_ID = "camera_color_optical_frame"
START_NS = 1_700_000_000_000_000_000


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """(H, W) float32 metres -> uint16 millimetres (rounded), 0 where invalid or too far."""
    mm = np.rint(np.nan_to_num(depth, nan=0.0, posinf=0.0) * 1000.0)
    mm[(mm < 0) | (mm > 65535)] = 0
    return mm.astype(np.uint16)


def make_synthetic_bag(
    out_dir: str | os.PathLike,
    frames: int = 10,
    height: int = 480,
    width: int = 640,
    rate_hz: float = 2.0,
    storage: str = "mcap",
    seed: int = 0,
    overwrite: bool = False,
    topics: BagTopics | None = None,
) -> Path:
    """Render ``frames`` synthetic scenes and write them as a rosbag2 at ``out_dir``.

    Returns the bag path. The bag is written atomically (:class:`BagWriter`).

    Raises:
        ValueError: non-positive frames/size/rate, or unknown storage.
        FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
    """
    if frames <= 0 or height <= 0 or width <= 0 or not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(
            f"frames, height, width and rate_hz must be positive, got {frames}, {height}, "
            f"{width}, {rate_hz}"
        )
    topics = topics or BagTopics()
    data = SyntheticScenes(frames, height, width, seed=seed)
    period_ns = int(round(1e9 / rate_hz))
    with BagWriter(out_dir, storage=storage, overwrite=overwrite) as w:
        for i in range(frames):
            s = data[i]
            t = START_NS + i * period_ns
            info = camera_info_msg(t, FRAME_ID, s["K"], height, width)
            w.write(topics.color, IMAGE, image_msg(t, FRAME_ID, s["rgb"], "rgb8"), t)
            w.write(
                topics.color_compressed, COMPRESSED, compressed_image_msg(t, FRAME_ID, s["rgb"]), t
            )
            w.write(topics.color_info, CAMERA_INFO, info, t)
            w.write(
                topics.depth, IMAGE, image_msg(t, FRAME_ID, depth_to_mm(s["depth"]), "16UC1"), t
            )
            w.write(topics.depth_info, CAMERA_INFO, info, t)
    return Path(out_dir)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    p = argparse.ArgumentParser(
        prog="make_synthetic_bag",
        description="Write a RealSense-style rosbag2 (rgb, jpeg, camera_info, 16UC1 depth) "
        "of procedural indoor scenes.",
    )
    p.add_argument("--out", required=True, help="bag directory to create")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--rate", type=float, default=2.0, help="frame rate in Hz (header stamps)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    args = p.parse_args(argv)
    try:
        path = make_synthetic_bag(
            args.out, args.frames, args.height, args.width, args.rate, args.storage, args.seed,
            overwrite=args.overwrite,
        )  # fmt: skip
    except (ValueError, FileExistsError) as exc:
        p.error(str(exc))
    except KeyboardInterrupt:
        print(f"make_synthetic_bag: interrupted; {args.out} is as it was", file=sys.stderr)
        return 130
    print(f"wrote {args.frames} frames to {path} ({args.storage})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
