"""Command line (``python -m joint_perception.data.sevenscenes``): estimate the registration or
the scene layout of a sequence, draw the figures for the docs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from joint_perception.data.sevenscenes.calibrate import estimate_registration
from joint_perception.data.sevenscenes.dataset import SevenScenes
from joint_perception.data.sevenscenes.figures import pseudolabel_figure, registration_figure
from joint_perception.data.sevenscenes.files import list_frames
from joint_perception.data.sevenscenes.labels import CEILING, FLOOR, WALL
from joint_perception.data.sevenscenes.layout import estimate_scene_layout


def main(argv: list[str] | None = None) -> int:
    """Command line: estimate the registration or the scene layout, draw the figures."""
    ap = argparse.ArgumentParser(prog="python -m joint_perception.data.sevenscenes",
                                 description="7-Scenes registration / layout estimation and figures.")  # fmt: skip
    ap.add_argument(
        "--estimate-registration",
        metavar="ROOT",
        help="fit COLOR_K / DEPTH_TO_COLOR_T on a sequence",
    )
    ap.add_argument(
        "--estimate-layout",
        metavar="ROOT",
        help="estimate gravity, floor, ceiling and walls (JSON)",
    )
    ap.add_argument(
        "--figures", metavar="ROOT", help="write the registration and pseudo-label figures"
    )
    ap.add_argument(
        "--out-dir", default="docs/images", help="folder for --figures (default docs/images)"
    )
    ap.add_argument(
        "--step",
        type=int,
        default=10,
        help="use every STEP-th frame for the estimates (default 10)",
    )
    args = ap.parse_args(argv)

    def log(m):
        print(m, file=sys.stderr, flush=True)

    if args.estimate_registration:
        root = Path(args.estimate_registration)
        est = estimate_registration(root, frames=list_frames(root)[:: args.step], log=log)
        print(json.dumps(est.summary(), indent=2))
    if args.estimate_layout:
        root = Path(args.estimate_layout)
        layout = estimate_scene_layout(root, frames=list_frames(root)[:: args.step], log=log)
        print(json.dumps(layout.to_dict(), indent=2))
    if args.figures:
        root = Path(args.figures)
        out = Path(args.out_dir)
        print(registration_figure(root, [300, 450, 860], out / "sevenscenes_registration.png"))
        ds = SevenScenes(root, "all", labels="geometry")
        items = [ds.frames.index(i) for i in (0, 150, 640, 900)]
        print(pseudolabel_figure(ds, items, out / "sevenscenes_pseudolabels.png"))
        fr = []
        for i in range(0, len(ds), 20):
            lab = ds[i]["labels"]
            fr.append([(lab == k).mean() for k in (FLOOR, WALL, CEILING)])
        fr = np.array(fr)
        print(json.dumps({name: {"mean": round(float(fr[:, k].mean()), 4), "max": round(float(fr[:, k].max()), 4),
                                 "frames_with_any": round(float((fr[:, k] > 0).mean()), 3)}
                          for k, name in enumerate(("floor", "wall", "ceiling"))}, indent=2))  # fmt: skip
    if not (args.estimate_registration or args.estimate_layout or args.figures):
        ap.print_help()
    return 0
