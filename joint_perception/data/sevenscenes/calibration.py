"""The Kinect v1 cameras of 7-Scenes and their depth -> colour calibration: the image size, the
depth camera's K (given by the data set), the colour camera's K and the depth -> colour pose
(estimated from the data by :func:`~.calibrate.estimate_registration`, applied by
:func:`~.registration.register_depth`).

Registration model (REP 103 optical frames, pixel centres at integer coordinates): a depth
pixel (u, v) with depth z back-projects with ``DEPTH_K`` to ``X_d = z K_d^-1 [u, v, 1]``, moves
to the colour camera with ``X_c = R X_d + t`` (``DEPTH_TO_COLOR_R``, ``DEPTH_TO_COLOR_T``) and
projects with ``COLOR_K``; the nearest point wins where several land on one colour pixel
(z-buffer), colour pixels that receive no point stay invalid (0). ``R`` is fixed to identity:
to first order a small rotation about x or y is a shift of the principal point (absorbed by
``cx``, ``cy``); ``t_z`` is fixed to 0 (the two Kinect lenses sit in one plane). The free
parameters are ``fx, fy, cx, cy`` of the colour camera and ``t_x, t_y`` (the lens baseline,
which gives a depth-dependent shift of ``fx t_x / z`` pixels that no scale + offset model has).

Measured with ``python -m joint_perception.data.sevenscenes --estimate-registration ROOT`` on
the redkitchen frames 0, 10, ..., 990 (100 frames, 207k occluding depth-edge points; method in
:func:`~.calibrate.estimate_registration`), checked on the 100 held-out frames 5, 15, ..., 995:

==============================  ==============  ================  ==============
model                           mean edge dist  median edge dist  share < 1.5 px
==============================  ==============  ================  ==============
none (depth pixel = colour px)  5.99 px         6.20 px           18.0 %
scale 0.90, offset (-5, -1)     3.94 px         2.42 px           34.4 %
this model (constants below)    3.54 px         1.84 px           43.4 %
==============================  ==============  ================  ==============

(distances from the projected depth edges to the nearest colour Canny edge, truncated at
10 px; a depth edge without a colour edge counts 10 px, so these are upper bounds). Result:
``fx = 525.25, fy = 529.0, cx = 322.12, cy = 237.62`` (ratio to the depth focal 0.898 /
0.904) and ``t = (-30.0, 2.5, 0) mm``: the colour lens sits ~3 cm to the right of the depth
lens as seen by the camera, close to the Kinect v1's 2.5 cm IR-to-RGB baseline. A profile over
``t_x`` with the other five parameters re-fitted has its minimum at -30..-35 mm (cost +0.06 px
at 0 and -50 mm). Per held-out frame, the extra shift that fits the frame best has a standard
deviation of 1.4 px (x) and 1.2 px (y), 5-95 % range -1.5..+2.0 px: colour and depth are not
exposed at the same instant, so frames taken during fast motion move by a pixel or two.
The depth camera's own K (585, 320, 240) is taken as given; the colour focal length is
therefore relative to it. The colour camera sees wider than the depth camera: registered depth
never reaches the outer ~20 px on the left, top and bottom and ~43 px on the right (the baseline
shifts near points left); on average 72 % of the colour pixels get a depth.
"""

from __future__ import annotations

import numpy as np

#: (height, width) of both Kinect v1 images.
IMAGE_SIZE = (480, 640)

#: Depth camera intrinsics used by 7-Scenes' KinectFusion (``camera-intrinsics.txt``).
DEPTH_K = np.array([[585.0, 0.0, 320.0], [0.0, 585.0, 240.0], [0.0, 0.0, 1.0]])

#: Colour camera intrinsics at 640x480, estimated from the data by edge alignment over 100
#: redkitchen frames (module docstring: method, residuals, spread).
COLOR_K = np.array([[525.25, 0.0, 322.12], [0.0, 529.0, 237.62], [0.0, 0.0, 1.0]])

#: Rotation depth -> colour camera (identity by the model's choice, see the module docstring).
DEPTH_TO_COLOR_R = np.eye(3)

#: Translation depth -> colour camera in metres (``X_c = R X_d + t``), estimated together with
#: COLOR_K (t_z fixed to 0).
DEPTH_TO_COLOR_T = np.array([-0.030, 0.0025, 0.0])

for _a in (DEPTH_K, COLOR_K, DEPTH_TO_COLOR_R, DEPTH_TO_COLOR_T):
    _a.setflags(write=False)
