"""Microsoft 7-Scenes RGB-D sequences (Shotton et al., "Scene Coordinate Regression Forests for
Camera Relocalization in RGB-D Images", CVPR 2013; Glocker et al., "Real-Time RGB-D Camera
Relocalization", ISMAR 2013) as registered training frames.

A sequence folder holds ``frame-NNNNNN.color.jpg`` (640x480 RGB), ``frame-NNNNNN.depth.png``
(uint16 millimetres; 0 and 65535 invalid), ``frame-NNNNNN.pose.txt`` (4x4 camera-to-world,
metres, from KinectFusion tracking of the *depth* camera) and optionally
``camera-intrinsics.txt`` (the depth camera's default K: fx = fy = 585, cx = 320, cy = 240).
The Kinect v1 colour and depth images are **not registered** and 7-Scenes ships no calibration,
so this package estimates one from the data (:func:`estimate_registration`) and resamples the
depth into the colour image (:func:`register_depth`).

The registration model, its measured residuals and the resulting constants are in
:mod:`~.calibration`.

Pseudo-labels (:func:`geometric_labels`, :func:`estimate_scene_layout`): floor, wall and
ceiling from the sensor depth, the poses and the gravity direction estimated from the data;
see those functions for the method and the redkitchen numbers.

Modules, one idea each (a module imports only those above it in this list):

* :mod:`~.calibration` — :data:`IMAGE_SIZE`, :data:`DEPTH_K`, :data:`COLOR_K`,
  :data:`DEPTH_TO_COLOR_R`, :data:`DEPTH_TO_COLOR_T`: the two cameras and the registration
  model with its measured numbers.
* :mod:`~.files` — a sequence folder's files: :func:`list_frames`, :func:`read_depth_mm`,
  :func:`read_pose`, :func:`read_intrinsics`.
* :mod:`~.registration` — :func:`register_depth` (depth into the colour image),
  :func:`colour_camera_pose`.
* :mod:`~.edges` — the edge alignment measure: :func:`depth_edge_mask`,
  :func:`edge_distance_map`, :func:`edge_residuals`.
* :mod:`~.calibrate` — :func:`estimate_registration`, :class:`RegistrationEstimate`: the
  calibration fitted to the data.
* :mod:`~.normals` — :func:`normals_from_disparity_planes`.
* :mod:`~.gravity` — :func:`gravity_from_poses`, :func:`refine_up`.
* :mod:`~.layout` — :class:`SceneLayout`, :func:`estimate_scene_layout`: floor, ceiling and
  walls.
* :mod:`~.labels` — :func:`geometric_labels`, :data:`WALL`, :data:`FLOOR`, :data:`CEILING`.
* :mod:`~.cache` — the cache's key digest and normal encoding.
* :mod:`~.dataset` — :class:`SevenScenes`, :data:`VAL_START`.
* :mod:`~.figures` — :func:`registration_figure`, :func:`pseudolabel_figure`.
* :mod:`~.cli` — :func:`main` (``python -m joint_perception.data.sevenscenes``).
"""

from joint_perception.data.sevenscenes.cache import _CACHE_VERSION as _CACHE_VERSION
from joint_perception.data.sevenscenes.calibrate import (
    RegistrationEstimate,
    estimate_registration,
)
from joint_perception.data.sevenscenes.calibrate import (
    _edge_frame as _edge_frame,
)
from joint_perception.data.sevenscenes.calibration import (
    COLOR_K,
    DEPTH_K,
    DEPTH_TO_COLOR_R,
    DEPTH_TO_COLOR_T,
    IMAGE_SIZE,
)
from joint_perception.data.sevenscenes.cli import main as main
from joint_perception.data.sevenscenes.dataset import VAL_START, SevenScenes
from joint_perception.data.sevenscenes.edges import (
    depth_edge_mask,
    edge_distance_map,
    edge_residuals,
)
from joint_perception.data.sevenscenes.figures import pseudolabel_figure, registration_figure
from joint_perception.data.sevenscenes.files import (
    list_frames,
    read_depth_mm,
    read_intrinsics,
    read_pose,
)
from joint_perception.data.sevenscenes.gravity import gravity_from_poses, refine_up
from joint_perception.data.sevenscenes.labels import CEILING, FLOOR, WALL, geometric_labels
from joint_perception.data.sevenscenes.layout import SceneLayout, estimate_scene_layout
from joint_perception.data.sevenscenes.normals import normals_from_disparity_planes
from joint_perception.data.sevenscenes.registration import colour_camera_pose, register_depth

# main, _edge_frame (used by test/test_sevenscenes.py) and _CACHE_VERSION stay importable from
# the package as they were from the single module; they are not part of ``import *``.
__all__ = [
    "DEPTH_K",
    "COLOR_K",
    "DEPTH_TO_COLOR_R",
    "DEPTH_TO_COLOR_T",
    "IMAGE_SIZE",
    "VAL_START",
    "read_depth_mm",
    "read_pose",
    "read_intrinsics",
    "list_frames",
    "register_depth",
    "depth_edge_mask",
    "edge_distance_map",
    "edge_residuals",
    "RegistrationEstimate",
    "estimate_registration",
    "colour_camera_pose",
    "normals_from_disparity_planes",
    "SceneLayout",
    "gravity_from_poses",
    "refine_up",
    "estimate_scene_layout",
    "WALL",
    "FLOOR",
    "CEILING",
    "geometric_labels",
    "SevenScenes",
    "registration_figure",
    "pseudolabel_figure",
]
