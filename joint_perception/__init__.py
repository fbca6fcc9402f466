"""joint_perception: monocular joint depth, semantics and normals for ROS 2."""

import os

# ONNX Runtime's telemetry resolves a Microsoft host through the system's DNS resolver every few
# seconds (ort.disable_telemetry_events() does not stop it; the variable does). Set here, in the
# package's first module, so it is in place before any project module imports onnxruntime and is
# inherited by every child process (node, replay, tests). docs/contracts.md section 6.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
