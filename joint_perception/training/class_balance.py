"""Class-balancing weights for the segmentation loss of a recipe, from its own training mixture.

``python -m joint_perception.training.class_balance --config RECIPE [--samples N]`` draws N
training samples of the recipe's ``data.train`` mixture (the same readers, teacher labels,
repetition and training transforms as ``train``), counts the labelled pixels per class and prints
median-frequency weights as the YAML line to put in the recipe's ``model.class_weights``.

Median-frequency balancing (Eigen & Fergus, ICCV 2015, sec. 4.2):
``w_c = median_c'(f_c') / f_c``, with ``f_c`` the pixel frequency of class c over the samples
that contain it. Departure, declared: the weights are clipped to ``[w_min, w_max]`` (default
[0.25, 4]) — unclipped they reach 10^2 for the rarest NYUv2-40 classes of a synthetic mixture,
and one mislabelled teacher pixel of such a class would weigh as much as a hundred wall pixels.
``power`` < 1 softens them further (0.5 = square root). A class never seen gets ``w_max``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterable, Sequence

import numpy as np

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__all__ = ["label_statistics", "median_frequency_weights", "main"]

log = logging.getLogger(__name__)


def label_statistics(labels: Iterable[np.ndarray], num_classes: int) -> tuple[np.ndarray, ...]:
    """Per-class pixel counts over label maps.

    Args:
        labels: (H, W) integer maps, 0 = void, 1..num_classes; values above are errors.
        num_classes: C.

    Returns:
        ``(pixels, image_pixels)``: (C,) int64 counts of class c's pixels, and (C,) int64
        total labelled pixels of the maps in which class c appears (the denominator of f_c).

    Raises:
        ValueError: a label above ``num_classes`` or below 0.
    """
    pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for lab in labels:
        lab = np.asarray(lab).reshape(-1).astype(np.int64)
        if lab.size and (lab.min() < 0 or lab.max() > num_classes):
            raise ValueError(f"labels must lie in 0..{num_classes}, got {lab.min()}..{lab.max()}")
        counts = np.bincount(lab, minlength=num_classes + 1)[1:]
        pixels += counts
        image_pixels[counts > 0] += counts.sum()
    return pixels, image_pixels


def median_frequency_weights(
    pixels: Sequence[int] | np.ndarray,
    image_pixels: Sequence[int] | np.ndarray,
    power: float = 1.0,
    w_min: float = 0.25,
    w_max: float = 4.0,
) -> np.ndarray:
    """Median-frequency class weights ``clip((median(f) / f_c) ** power, w_min, w_max)``.

    Args:
        pixels, image_pixels: (C,) counts from :func:`label_statistics`.
        power: exponent of the Eigen & Fergus weight (1 = the paper's, 0.5 = its square root).
        w_min, w_max: clip range; a class with no pixel gets ``w_max``.

    Returns:
        (C,) float64 weights, index 0 for class 1.

    Raises:
        ValueError: shapes differ, no class was seen, or ``0 < w_min <= w_max`` is violated.
    """
    pixels = np.asarray(pixels, np.float64)
    image_pixels = np.asarray(image_pixels, np.float64)
    if pixels.shape != image_pixels.shape or pixels.ndim != 1:
        raise ValueError(f"pixels {pixels.shape} and image_pixels {image_pixels.shape} differ")
    if not 0 < w_min <= w_max:
        raise ValueError(f"need 0 < w_min <= w_max, got {w_min}, {w_max}")
    seen = pixels > 0
    if not seen.any():
        raise ValueError("no labelled pixel in the samples: nothing to balance")
    freq = np.zeros_like(pixels)
    freq[seen] = pixels[seen] / image_pixels[seen]
    w = np.full_like(pixels, w_max)
    w[seen] = (np.median(freq[seen]) / freq[seen]) ** power
    return np.clip(w, w_min, w_max)


def _sample_labels(cfg: dict, samples: int, seed: int):
    from joint_perception.training.datamodule import JointDataModule

    dm = JointDataModule(cfg["data"], cfg["input_size"])
    dm.setup("fit")
    ds = dm.train_set
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds), size=min(samples, len(ds)), replace=False)
    from tqdm import tqdm

    for i in tqdm(idx, desc="class frequencies", unit="sample"):
        item = ds[int(i)]
        if "labels" in item and bool(item.get("has_labels", True)):
            yield np.asarray(item["labels"])


def main(argv: Sequence[str] | None = None) -> int:
    from joint_perception.training.config import load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="training recipe (YAML)")
    p.add_argument("overrides", nargs="*", help="recipe overrides key=value, as for train")
    p.add_argument("--samples", type=int, default=2000, help="training samples to count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--power", type=float, default=1.0, help="1 = the paper")
    p.add_argument("--w-min", type=float, default=0.25)
    p.add_argument("--w-max", type=float, default=4.0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(a.config, a.overrides)
    import lightning

    lightning.seed_everything(int(cfg["seed"]), workers=True, verbose=False)  # as train does
    c = int(cfg["model"]["num_classes"])
    pixels, image_pixels = label_statistics(_sample_labels(cfg, a.samples, a.seed), c)
    w = median_frequency_weights(pixels, image_pixels, a.power, a.w_min, a.w_max)
    total = max(int(pixels.sum()), 1)
    for k in range(c):
        log.info(
            "class %2d: %6.3f%% of labelled pixels, weight %.3f",
            k + 1,
            100 * pixels[k] / total,
            w[k],
        )
    print("class_weights: [" + ", ".join(f"{v:.3f}" for v in w) + "]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
