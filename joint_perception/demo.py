"""`make demo`: the main job end to end on bundled input, over real ROS 2 on loopback.

1. Renders a short RealSense-style rosbag2 from the project's synthetic indoor scenes
   (:mod:`joint_perception.data.synthetic_bag`): rgb8 images, JPEG, CameraInfo, 16UC1 depth.
2. Replays it through the real ``perception_node`` with the shipped default model
   (:mod:`joint_perception.evaluation.replay`), recording every output to a rosbag2.
3. Prints where the output bag, the summary and the report are.

DDS traffic stays on loopback (``joint_perception.ros.local_dds``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from joint_perception.ros.local_dds import apply_loopback_environment


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/demo"), help="output directory")
    ap.add_argument("--frames", type=int, default=10, help="synthetic frames to render")
    ap.add_argument("--rate", type=float, default=2.0, help="replay rate in Hz")
    ap.add_argument("--model", default="realtime", help="model name in models/ or a path")
    a = ap.parse_args(argv)
    apply_loopback_environment()

    from joint_perception.data.synthetic_bag import make_synthetic_bag
    from joint_perception.evaluation import replay
    from joint_perception.runtime.factory import resolve_model_path

    try:
        model = resolve_model_path(a.model)
    except FileNotFoundError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    bag = a.out / "input_bag"
    print(f"[demo] rendering {a.frames} synthetic 640x480 frames -> {bag}")
    make_synthetic_bag(bag, frames=a.frames, rate_hz=a.rate, overwrite=True)
    print(f"[demo] replaying through perception_node (model {model}) at {a.rate} Hz")
    code = replay.main(
        [
            "--bag",
            str(bag),
            "--out",
            str(a.out / "replay"),
            "--rate",
            str(a.rate),
            "--set",
            f"model:={model}",
        ]
    )
    if code != 0:
        return code
    out = (a.out / "replay").resolve()
    print(f"[demo] done. Outputs: {out / 'output'} (rosbag2, MCAP)")
    print(f"[demo] summary: {out / 'summary.md'} and {out / 'summary.json'}")
    if (out / "report.html").exists():
        print(f"[demo] report: {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
