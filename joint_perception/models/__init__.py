"""Networks in plain torch: backbones, the real-time default and the paper models."""

from joint_perception.models.registry import build_model, list_models, register_model

__all__ = ["build_model", "list_models", "register_model"]
