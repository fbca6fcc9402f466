"""NYU Depth V2 class tables and camera intrinsics.

Class ids follow the conventions used by every NYUv2 semantic benchmark:

* 40 classes of Gupta, Arbelaez and Malik, "Perceptual Organization and Recognition of
  Indoor Scenes from RGB-D Images", CVPR 2013 (``classMapping40.mat``). Label id ``k`` in
  ``1..40`` is ``NAMES40[k - 1]``; id 0 is void/unlabelled and is not listed.
* 13 classes of Couprie et al., "Indoor Semantic Segmentation using depth information",
  ICLR 2013, also used by Eigen & Fergus, ICCV 2015 (``class13Mapping.mat``). Same scheme:
  id ``k`` in ``1..13`` is ``NAMES13[k - 1]``.
* ``MAP40_TO_13[k40]`` gives the 13-class id of a 40-class id (length 41, ``0 -> 0``), so a
  40-class label image converts with ``MAP40_TO_13[labels40]``.

The spellings (e.g. ``"refridgerator"``) are those of the original tables on purpose, so that
names compare equal with other tools built on them.

Intrinsics: ``NYU_K`` is the calibrated, rectified RGB camera of NYU Depth V2 (Silberman et al.,
ECCV 2012, toolbox ``camera_params.m``) at ``NYU_SIZE = (480, 640)`` (height, width).
"""

from __future__ import annotations

import numpy as np

NAMES40: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair",
    "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves",
    "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refridgerator", "television",
    "paper", "towel", "shower curtain", "box", "whiteboard",
    "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip

NAMES13: tuple[str, ...] = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects",
    "picture", "sofa", "table", "tv", "wall", "window",
)  # fmt: skip

# 40-class name -> 13-class name (Couprie et al. 2013 grouping).
_GROUP_40_TO_13: dict[str, str] = {
    "wall": "wall", "floor": "floor", "cabinet": "furniture", "bed": "bed",
    "chair": "chair", "sofa": "sofa", "table": "table", "door": "wall",
    "window": "window", "bookshelf": "furniture", "picture": "picture",
    "counter": "furniture", "blinds": "window", "desk": "table", "shelves": "furniture",
    "curtain": "window", "dresser": "furniture", "pillow": "objects", "mirror": "objects",
    "floor mat": "floor", "clothes": "objects", "ceiling": "ceiling", "books": "books",
    "refridgerator": "furniture", "television": "tv", "paper": "objects", "towel": "objects",
    "shower curtain": "objects", "box": "objects", "whiteboard": "objects",
    "person": "objects", "night stand": "furniture", "toilet": "objects", "sink": "objects",
    "lamp": "objects", "bathtub": "objects", "bag": "objects", "otherstructure": "objects",
    "otherfurniture": "furniture", "otherprop": "objects",
}  # fmt: skip

#: Read-only uint8 array of length 41: ``MAP40_TO_13[k40] -> k13`` (0 -> 0, void stays void).
MAP40_TO_13: np.ndarray = np.array(
    [0] + [NAMES13.index(_GROUP_40_TO_13[name]) + 1 for name in NAMES40], dtype=np.uint8
)
MAP40_TO_13.setflags(write=False)

#: 40-class id by name, e.g. ``ID40["chair"] == 5``.
ID40: dict[str, int] = {name: i + 1 for i, name in enumerate(NAMES40)}
#: 13-class id by name, e.g. ``ID13["wall"] == 12``.
ID13: dict[str, int] = {name: i + 1 for i, name in enumerate(NAMES13)}

#: (height, width) in pixels of the image ``NYU_K`` belongs to.
NYU_SIZE: tuple[int, int] = (480, 640)

#: 3x3 float64 pinhole intrinsics of the NYUv2 RGB camera at 640x480 (pixels).
NYU_K: np.ndarray = np.array(
    [[518.8579, 0.0, 325.58245], [0.0, 519.46961, 253.73617], [0.0, 0.0, 1.0]],
    dtype=np.float64,
)
NYU_K.setflags(write=False)


def labels40_to_13(labels40: np.ndarray) -> np.ndarray:
    """Convert a NYU-40 label image to the 13-class set.

    Args:
        labels40: integer array of any shape with values in ``0..40`` (0 = void).

    Returns:
        uint8 array of the same shape with values in ``0..13`` (0 = void).

    Raises:
        ValueError: if the array is not integer-typed or holds ids outside ``0..40``.
    """
    labels40 = np.asarray(labels40)
    if not np.issubdtype(labels40.dtype, np.integer):
        raise ValueError(f"labels40 must be an integer array, got dtype {labels40.dtype}")
    if labels40.size and (labels40.min() < 0 or labels40.max() > len(NAMES40)):
        raise ValueError(
            f"labels40 values must lie in 0..{len(NAMES40)}, "
            f"got range {labels40.min()}..{labels40.max()}"
        )
    return MAP40_TO_13[labels40]


def scaled_nyu_k(height: int, width: int) -> np.ndarray:
    """``NYU_K`` rescaled to an image of ``height`` x ``width`` pixels (full-frame resize).

    Uses the pixel-centre convention ``c' = (c + 0.5) * s - 0.5`` for the principal point and
    ``f' = f * s`` for the focal lengths, with separate x/y scale factors.

    Returns:
        3x3 float64 array.

    Raises:
        ValueError: for non-positive sizes.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    sy = height / NYU_SIZE[0]
    sx = width / NYU_SIZE[1]
    K = NYU_K.copy()
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def default_class_names(num_classes: int) -> list[str]:
    """NYUv2 class names (void excluded) for 40 or 13 classes.

    Raises:
        ValueError: for any other class count (pass the class names explicitly).
    """
    tables = {40: NAMES40, 13: NAMES13}
    if num_classes not in tables:
        raise ValueError(
            f"no default class names for {num_classes} classes (NYUv2 has 40 or 13); pass class_names"
        )
    return list(tables[num_classes])
