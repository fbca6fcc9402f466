"""Inference backends behind one interface (docs/contracts.md section 4) and their selection.

``create_backend(model, backend="auto")`` returns a :class:`Backend`; backend modules
(TensorRT, torch, ONNX Runtime) are imported only when chosen.
"""

from joint_perception.runtime.base import Backend, BackendUnavailable, Prediction
from joint_perception.runtime.factory import BACKENDS, create_backend, resolve_model_path

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "Prediction",
    "create_backend",
    "resolve_model_path",
]
