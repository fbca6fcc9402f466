"""Build networks by name from configuration: ``build_model("pap", num_classes=40)``."""

from __future__ import annotations

import importlib
from collections.abc import Callable

_REGISTRY: dict[str, Callable] = {}

# name -> module that registers it (imported lazily so importing one model stays cheap)
_MODULES = {
    "realtime": "joint_perception.models.realtime",
    "pap": "joint_perception.models.pap",
    "cinet": "joint_perception.models.cinet",
    "sosd": "joint_perception.models.sosd",
    "mscnn_crf": "joint_perception.models.mscnn_crf",
}


def register_model(name: str) -> Callable:
    """Class decorator: make ``cls`` buildable as ``build_model(name, **kwargs)``."""

    def deco(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        _REGISTRY[name] = cls
        cls.arch = name
        return cls

    return deco


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(set(_MODULES) | set(_REGISTRY))


def model_class(name: str) -> Callable:
    """The class registered as ``name`` (its module is imported on first use).

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in _REGISTRY and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[name]


def build_model(name: str, **kwargs):
    """Instantiate the network registered as ``name``.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    return model_class(name)(**kwargs)
