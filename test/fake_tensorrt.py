"""A stand-in for the ``tensorrt`` module of one release, for the engine *build* path only.

TensorRT cannot be installed here, so :func:`joint_perception.runtime.tensorrt_engine.build_engine`
runs against this fake in tests. It defines only names the real bindings of the release it
imitates have (``test_tensorrt_api_surface.py::test_fake_tensorrt_names_are_real`` reads them
from the wheel and checks every name :func:`defined_names` lists), leaves out the ones that
release lacks (``BuilderFlag.FP16``/``INT8`` in 11.x,
``HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY`` before 10.9), and uses the real enum
values where the code depends on them: ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` is 1 in
10.x and 0 in 11.x (``include/NvInfer.h`` of NVIDIA/TensorRT v10.3.0 and v11.1).

The parser really reads the ONNX file (with ``onnx``) and records the precision of the graph it
was given; the builder records the network flags, the config flags and settings, and drives the
progress monitor the way TensorRT does. Nothing here runs a network.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field

import onnx

from joint_perception.runtime.onnx_precision import onnx_precision


class _Enum:
    """Enum values as plain ints with names (``int(flag)`` works as on pybind11 enums)."""

    def __init__(self, **values: int):
        for name, value in values.items():
            setattr(self, name, _Value(name, value))

    def names(self) -> list[str]:
        return [n for n in vars(self) if not n.startswith("_")]


class _Value(int):
    def __new__(cls, name: str, value: int):
        obj = super().__new__(cls, value)
        obj.name = name
        return obj


@dataclass
class Record:
    """What the fake saw during one build."""

    network_flags: list[int] = field(default_factory=list)
    parsed: list[tuple[str, str]] = field(default_factory=list)  # (path, graph precision)
    config_flags: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)


def make_fake_tensorrt(version: str) -> types.SimpleNamespace:
    """A fake ``tensorrt`` module for release ``version`` (``"10.3.0"``, ``"11.4.0.106"``...)."""
    major_minor = tuple(int(p) for p in version.split(".")[:2])
    record = Record()
    trt = types.SimpleNamespace(__version__=version, record=record)

    builder_flags = dict(GPU_FALLBACK=1, VERSION_COMPATIBLE=2, TF32=3, DIRECT_IO=4)
    if major_minor < (11, 0):  # weakly typed precision flags: removed in 11.0
        builder_flags.update(FP16=10, INT8=11, BF16=12, OBEY_PRECISION_CONSTRAINTS=13)
    trt.BuilderFlag = _Enum(**builder_flags)
    strongly_typed = 0 if major_minor >= (11, 0) else 1
    trt.NetworkDefinitionCreationFlag = _Enum(STRONGLY_TYPED=strongly_typed)
    trt.MemoryPoolType = _Enum(WORKSPACE=0)
    trt.DeviceType = _Enum(GPU=0, DLA=1)
    levels = dict(NONE=0, AMPERE_PLUS=1)
    if major_minor >= (10, 9):
        levels["SAME_COMPUTE_CAPABILITY"] = 2
    trt.HardwareCompatibilityLevel = _Enum(**levels)

    class ILogger:
        Severity = _Enum(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self) -> None:
            pass

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class _Network:
        def __init__(self, flags: int):
            self.flags = flags

    class _Error:
        def __init__(self, desc: str):
            self._desc = desc

        def node(self):
            return -1

        def node_name(self):
            return ""

        def node_operator(self):
            return ""

        def desc(self):
            return self._desc

        def code(self):
            return "MODEL_DESERIALIZE_FAILED"

    class OnnxParser:
        def __init__(self, network, logger):
            self.network = network
            self._errors: list[_Error] = []

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int):
            return self._errors[index]

        def parse_from_file(self, model: str) -> bool:
            try:
                graph = onnx.load(model)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is a parse failure
                self._errors.append(_Error(f"cannot read {model}: {exc}"))
                return False
            record.parsed.append((model, onnx_precision(graph)))
            return True

    class _TimingCache:
        def __init__(self, blob: bytes):
            self.blob = bytes(blob) or b"timing"

        def serialize(self):
            return self.blob

    class _Config:
        PROPERTIES = (
            "default_device_type",
            "DLA_core",
            "hardware_compatibility_level",
            "builder_optimization_level",
            "progress_monitor",
        )

        def __init__(self) -> None:
            self.progress_monitor = None
            self._timing = None

        def set_memory_pool_limit(self, pool, pool_size):
            record.settings["workspace"] = int(pool_size)

        def set_flag(self, flag):
            record.config_flags.append(flag.name)

        def __setattr__(self, name, value):
            if name in self.PROPERTIES and name != "progress_monitor":
                record.settings[name] = getattr(value, "name", value)
            elif not name.startswith("_") and name not in self.PROPERTIES:
                raise AttributeError(f"IBuilderConfig has no attribute {name!r}")
            object.__setattr__(self, name, value)

        def add_optimization_profile(self, profile):
            record.settings["profile"] = profile.shapes

        def create_timing_cache(self, serialized_timing_cache):
            return _TimingCache(serialized_timing_cache)

        def set_timing_cache(self, cache, ignore_mismatch):
            self._timing = cache

        def get_timing_cache(self):
            return self._timing

    class _Profile:
        def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's keyword names
            self.shapes = (input, tuple(min), tuple(opt), tuple(max))

    class _HostMemory:
        def __init__(self, data: bytes):
            self._data = data

        @property
        def nbytes(self) -> int:
            return len(self._data)

        def __bytes__(self) -> bytes:
            return self._data

    class Builder:
        num_DLA_cores = 2  # an AGX Orin

        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            record.network_flags.append(int(flags))
            return _Network(int(flags))

        def create_builder_config(self):
            return _Config()

        def create_optimization_profile(self):
            return _Profile()

        def build_serialized_network(self, network, config):
            monitor = config.progress_monitor
            for phase, steps in (("Building engine", 3), ("Tactic selection", 20)):
                monitor.phase_start(phase, None, steps)
                for step in range(steps):
                    if not monitor.step_complete(phase, step):
                        return None
                monitor.phase_finish(phase)
                record.phases.append(phase)
            precision = record.parsed[-1][1] if record.parsed else "none"
            return _HostMemory(f"fake engine: {precision}, flags {network.flags}".encode())

    trt.ILogger, trt.IProgressMonitor = ILogger, IProgressMonitor
    trt.OnnxParser, trt.Builder = OnnxParser, Builder
    trt._objects = (Builder, OnnxParser, _Error, _Config, _Profile, _TimingCache, _HostMemory)
    return trt


def defined_names(trt: types.SimpleNamespace) -> set[str]:
    """Every TensorRT API name the fake defines: module attributes (``"BuilderFlag.FP16"``,
    ``"Builder"``), public methods and properties of the objects it hands out, and the
    parameter names of those methods (keyword arguments in the real bindings)."""
    names = {"__version__", "ILogger.__init__", "IProgressMonitor.__init__"}
    names.update(f"ILogger.Severity.{n}" for n in trt.ILogger.Severity.names())
    for attr, value in vars(trt).items():
        if isinstance(value, _Enum):
            names.update(f"{attr}.{n}" for n in value.names())
    names.update(("Builder", "OnnxParser"))
    for cls in trt._objects:
        names.update(getattr(cls, "PROPERTIES", ()))
        public = cls in (trt.Builder, trt.OnnxParser)  # the others are never constructed
        for attr, value in vars(cls).items():
            if attr.startswith("_") and not (attr == "__init__" and public):
                continue
            if attr not in ("__init__", "PROPERTIES"):
                names.add(attr)
            if callable(value):
                params = list(inspect.signature(value).parameters)[1:]  # without self
                names.update(params)
    # the callbacks TensorRT calls on the project's subclasses of these two
    names.update(("ILogger.log", "IProgressMonitor.phase_start"))
    names.update(("IProgressMonitor.step_complete", "IProgressMonitor.phase_finish"))
    return names
