"""The perception node's parameters: one data-driven table, ROS-free validation, declaration.

Every parameter is one :class:`ParamSpec` in :data:`PARAMETERS` (name, default, type,
description, range or choices, read-only flag). The same table

* declares the parameters on a node with ``rcl_interfaces`` ``ParameterDescriptor`` s
  (description, ``FloatingPointRange`` / ``IntegerRange``, ``read_only``)
  — :func:`declare_parameters`;
* validates a plain ``dict`` without ROS — :func:`validate` (unit-testable; the node calls it
  at start-up and refuses to start on any problem, docs/contracts.md section 3);
* gives the defaults that ``config/perception.yaml`` must repeat — :func:`defaults`
  (a test checks that the YAML and this table agree).

This module does not import rclpy at module level; only :func:`declare_parameters` needs
``rcl_interfaces``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joint_perception.image_codec import DEFAULT_MAX_INPUT_PIXELS
from joint_perception.ros.topics import publish_parameters
from joint_perception.runtime import factory
from joint_perception.runtime.engine_select import DEFAULT_LATENCY_TARGET_MS, PRECISION_CHOICES

BACKENDS = ("auto", *factory.BACKENDS)
RELIABILITIES = ("best_effort", "reliable", "system_default")
DURABILITIES = ("volatile", "transient_local", "system_default")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    Attributes:
        name: parameter name (dots group them, e.g. ``qos.input.depth``).
        default: default value; its Python type (bool, int, float, str) is the parameter type.
        description: one sentence for ``ros2 param describe`` and the YAML comments.
        min_value, max_value: inclusive numeric range (ints and floats), or None.
        choices: allowed string values, or None.
        read_only: True where the value cannot change while the node is configured (inactive
            or active): it is read by the lifecycle ``configure`` transition, so it may be set
            while the node is unconfigured and applies at the next ``configure``.
        startup: True where the value is read once when the node is constructed (a read-only
            ROS parameter); implies ``read_only``.
    """

    name: str
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = True
    startup: bool = False

    @property
    def type(self) -> type:
        return type(self.default)


PARAMETERS: tuple[ParamSpec, ...] = (
    # --- lifecycle ---
    ParamSpec(
        "autostart",
        True,
        "Configure and activate the (managed) node at start-up; false = stay unconfigured until "
        "a lifecycle manager or `ros2 lifecycle set <node> configure` / `activate`.",
        startup=True,
    ),
    # --- model and backend ---
    ParamSpec(
        "model",
        "realtime",
        "Model directory, .onnx file, or name of a shipped model (models/<name>).",
    ),
    ParamSpec(
        "backend",
        "auto",
        "Inference backend; auto = TensorRT with a GPU, else PyTorch CUDA, else ONNX Runtime CPU.",
        choices=BACKENDS,
    ),
    ParamSpec(
        "device", "", "Device for the backend (e.g. cuda:0, cpu); empty = the backend's default."
    ),
    ParamSpec(
        "engine_cache_dir",
        "",
        "Directory for TensorRT engines built on this machine; empty = "
        "~/.cache/joint_perception/engines.",
    ),
    ParamSpec(
        "precision",
        "best",
        "TensorRT engine to load or build: fp32, fp16, int8 (built beforehand by export_engine "
        "with calibration frames), or best = the most precise cached engine that passed "
        "export_engine's accuracy gate and meets latency_target_ms (fp16 until export_engine "
        "has gated and timed one). Other backends ignore it.",
        choices=PRECISION_CHOICES,
    ),
    ParamSpec(
        "latency_target_ms",
        0.0,
        "Network latency target (ms) of precision best; 0 = the model's "
        f"(metadata extra.latency_target_ms, else {DEFAULT_LATENCY_TARGET_MS:g} ms).",
        min_value=0.0,
        max_value=10000.0,
    ),
    ParamSpec(
        "intra_op_threads",
        factory.THREAD_OPTIONS["intra_op_threads"],
        "CPU threads per network operator (ONNX Runtime intra-op pool, torch.set_num_threads); "
        "0 = the machine default: 1 on a machine with at most 2 cores, else the backend's "
        "own. TensorRT ignores it.",
        min_value=0,
        max_value=256,
    ),
    ParamSpec(
        "intra_op_spinning",
        factory.THREAD_OPTIONS["intra_op_spinning"],
        "Let ONNX Runtime's idle intra-op threads spin-wait for work: slightly lower latency "
        "for up to a core of CPU per thread; false on shared or small machines.",
    ),
    # --- input ---
    ParamSpec(
        "input_transport",
        "raw",
        "raw: subscribe sensor_msgs/Image on 'image'; compressed: CompressedImage on "
        "'image/compressed'.",
        choices=("raw", "compressed"),
    ),
    ParamSpec(
        "max_input_pixels",
        DEFAULT_MAX_INPUT_PIXELS,
        "Largest input frame (width x height pixels) the node decodes; larger frames are "
        "skipped and counted (skipped_input_too_large) before their pixels are allocated: raw "
        "images on their declared size, compressed ones on the size in their PNG/JPEG header. "
        f"Default {DEFAULT_MAX_INPUT_PIXELS} (4096x2304, so 4K passes); 0 = no limit.",
        min_value=0,
        max_value=2**40,
        read_only=False,
    ),
    ParamSpec(
        "camera_info_sync",
        "cached",
        "cached: use the latest CameraInfo; exact: same header stamp; approximate: nearest "
        "stamp within sync_slop_s.",
        choices=("cached", "exact", "approximate"),
    ),
    ParamSpec(
        "sync_slop_s",
        0.05,
        "Largest stamp difference (s) for camera_info_sync: approximate.",
        min_value=0.0,
        max_value=10.0,
    ),
    # --- outputs ---
    ParamSpec(
        "output_resolution",
        "input",
        "Resolution of every output: input (the camera's) or network (the model's input size).",
        choices=("input", "network"),
    ),
    ParamSpec(
        "min_depth",
        0.0,
        "Depth below this (m) is published as -Inf (REP 117: too close); 0 = the model's "
        "metadata value.",
        min_value=0.0,
        max_value=1000.0,
        read_only=False,
    ),
    ParamSpec(
        "max_depth",
        0.0,
        "Depth above this (m) is published as +Inf (REP 117: out of range); 0 = the model's "
        "metadata value.",
        min_value=0.0,
        max_value=1000.0,
        read_only=False,
    ),
    ParamSpec(
        "color_overlay_alpha",
        0.0,
        "Blend of the colour image over the input image: 0 = labels only, 1 = input only.",
        min_value=0.0,
        max_value=1.0,
        read_only=False,
    ),
    ParamSpec(
        "points_decimation",
        1,
        "Keep every k-th row and column of the point cloud (1 = full resolution).",
        min_value=1,
        max_value=16,
        read_only=False,
    ),
    # --- which outputs (one publish_* per topic group of joint_perception.ros.topics) ---
    *(ParamSpec(name, default, text) for name, (default, text) in publish_parameters().items()),
    # --- compressed outputs (image_transport formats, computed only when subscribed) ---
    ParamSpec(
        "compressed.color_format",
        "jpeg",
        "Codec of segmentation/color/compressed (labels/compressed is always lossless PNG).",
        choices=("jpeg", "png"),
        read_only=False,
    ),
    ParamSpec(
        "compressed.jpeg_quality",
        90,
        "JPEG quality of the 'compressed' outputs.",
        min_value=1,
        max_value=100,
        read_only=False,
    ),
    ParamSpec(
        "compressed.png_level",
        3,
        "PNG compression level (0-9) of the 'compressed' and 'compressedDepth' outputs.",
        min_value=0,
        max_value=9,
        read_only=False,
    ),
    ParamSpec(
        "compressed_depth.depth_max",
        0.0,
        "Largest depth (m) depth/image/compressedDepth encodes (farther comes back as NaN); "
        "0 = the published max_depth.",
        min_value=0.0,
        max_value=1000.0,
        read_only=False,
    ),
    ParamSpec(
        "compressed_depth.depth_quantization",
        100.0,
        "Depth quantisation of compressedDepth (image_transport's depth_quantization): the "
        "step at depth d is about d^2 / (q (q + 1)) m.",
        min_value=1.0,
        max_value=10000.0,
        read_only=False,
    ),
    # --- QoS (REP 2003) ---
    ParamSpec(
        "qos.input.reliability",
        "best_effort",
        "Reliability of the image/camera_info subscriptions (sensor-data profile: best_effort).",
        choices=RELIABILITIES,
    ),
    ParamSpec(
        "qos.input.durability", "volatile", "Durability of the subscriptions.", choices=DURABILITIES
    ),
    ParamSpec(
        "qos.input.depth",
        1,
        "History depth of the subscriptions (1 = newest frame only).",
        min_value=1,
        max_value=100,
    ),
    ParamSpec(
        "qos.output.reliability",
        "reliable",
        "Reliability of the output publishers.",
        choices=RELIABILITIES,
    ),
    ParamSpec(
        "qos.output.durability",
        "volatile",
        "Durability of the output publishers.",
        choices=DURABILITIES,
    ),
    ParamSpec(
        "qos.output.depth", 2, "History depth of the output publishers.", min_value=1, max_value=100
    ),
    # --- benchmarking baselines (keep the defaults in production) ---
    ParamSpec(
        "queue_size",
        0,
        "0 = newest-frame-only processing (stale frames dropped). N > 0 = a FIFO of N "
        "frames processed in order, the oldest dropped when full: a baseline for "
        "benchmarks that adds latency.",
        min_value=0,
        max_value=100,
    ),
    ParamSpec(
        "debug_delay_ms",
        0.0,
        "Extra sleep (ms) after each processed frame, to slow the node on purpose (tests "
        "of the peak-throughput search); 0 in production.",
        min_value=0.0,
        max_value=10000.0,
    ),
    # --- diagnostics and logging ---
    ParamSpec(
        "diagnostics_period_s",
        1.0,
        "Period (s) of the /diagnostics messages.",
        min_value=0.05,
        max_value=60.0,
        startup=True,
    ),
    ParamSpec(
        "diagnostics_window_s",
        5.0,
        "Window (s) the /diagnostics level and rate look back over: WARN while frames were "
        "skipped within it, OK again once frames flow for that long.",
        min_value=0.1,
        max_value=3600.0,
        read_only=False,
    ),
    ParamSpec(
        "warn_throttle_s",
        5.0,
        "Smallest interval (s) between two warnings for the same bad-input reason.",
        min_value=0.0,
        max_value=3600.0,
        read_only=False,
    ),
)

SPECS: dict[str, ParamSpec] = {s.name: s for s in PARAMETERS}


def defaults() -> dict[str, Any]:
    """``{name: default}`` for every parameter."""
    return {s.name: s.default for s in PARAMETERS}


def _type_ok(spec: ParamSpec, value: Any) -> bool:
    if spec.type is bool:
        return isinstance(value, bool)
    if spec.type is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec.type is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, spec.type)


def _model_problem(model: str) -> str | None:
    """Why ``model`` cannot be used, or None. Uses the runtime's resolver when present."""
    if not model:
        return "model: empty; give a model directory, an .onnx file or a shipped model name"
    try:
        from joint_perception.runtime.factory import resolve_model_path
    except ImportError:  # runtime not installed yet: fall back to a plain path check
        resolve_model_path = None
    if resolve_model_path is not None:
        try:
            resolve_model_path(model)
        except (FileNotFoundError, ValueError) as exc:
            return f"model: {exc}"
        return None
    if not Path(os.path.expanduser(model)).exists():
        return f"model: {model!r} does not exist"
    return None


def validate(params: dict[str, Any], check_model: bool = True) -> list[str]:
    """Check a parameter set; returns one human-readable problem per bad value (empty = OK).

    Missing names take their defaults. Checks: unknown names, types, numeric ranges, string
    choices, ``min_depth < max_depth`` when both are set, and (``check_model``) that the
    model resolves to an existing file or directory.

    Args:
        params: ``{name: value}``, e.g. from ``rclpy`` parameters or a YAML file.
        check_model: resolve ``model`` (off for pure table tests).

    Returns:
        list of messages, each starting with the parameter name.
    """
    problems: list[str] = []
    merged = defaults()
    for name, value in params.items():
        spec = SPECS.get(name)
        if spec is None:
            problems.append(f"{name}: unknown parameter (known: {', '.join(SPECS)})")
            continue
        if not _type_ok(spec, value):
            problems.append(
                f"{name}: expected {spec.type.__name__}, got {type(value).__name__} {value!r}"
            )
            continue
        if spec.type is float and not math.isfinite(value):
            problems.append(f"{name}: must be finite, got {value!r}")
            continue
        if spec.min_value is not None and value < spec.min_value:
            problems.append(f"{name}: {value!r} is below the minimum {spec.min_value}")
            continue
        if spec.max_value is not None and value > spec.max_value:
            problems.append(f"{name}: {value!r} is above the maximum {spec.max_value}")
            continue
        if spec.choices is not None and value not in spec.choices:
            problems.append(f"{name}: {value!r} is not one of {', '.join(spec.choices)}")
            continue
        merged[name] = value
    lo, hi = merged["min_depth"], merged["max_depth"]
    if lo > 0 and hi > 0 and lo >= hi:
        problems.append(f"min_depth: {lo} must be smaller than max_depth {hi}")
    if check_model and "model" not in {p.split(":")[0] for p in problems}:
        problem = _model_problem(merged["model"])
        if problem:
            problems.append(problem)
    return problems


def load_yaml_parameters(path: str | os.PathLike, node_name: str = "perception_node") -> dict:
    """Read ``ros__parameters`` of ``node_name`` (or ``/**/node_name``, ``/**``) from a ROS 2
    parameter file.

    Nested dictionaries are flattened with dots (``qos: {input: {depth: 1}}`` ->
    ``qos.input.depth``), as ``rclpy`` does.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a ROS 2 parameter file for that node (message names the file).
    """
    import yaml

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"parameter file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not valid YAML: {exc}") from exc
    section = None
    for key in (node_name, f"/{node_name}", f"/**/{node_name}", "/**"):
        if isinstance(data.get(key), dict) and "ros__parameters" in data[key]:
            section = data[key]["ros__parameters"]
            break
    if not isinstance(section, dict):
        raise ValueError(f"{p}: no '{node_name}: ros__parameters:' section")
    return flatten_parameters(section)


def flatten_parameters(section: dict) -> dict[str, Any]:
    """A ``ros__parameters`` mapping with nested dictionaries flattened with dots
    (``qos: {input: {depth: 1}}`` -> ``{"qos.input.depth": 1}``), as ``rclpy`` does."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict) -> None:
        for k, v in node.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(name + ".", v)
            else:
                flat[name] = v

    walk("", section)
    return flat


def node_key_matches(key: str, fqn: str) -> bool:
    """Whether a parameter-file key applies to the node ``fqn`` (``/ns/name``) as rcl decides:
    ``/**`` = any namespaces, ``*`` = one name or part of one; a key without a leading ``/``
    is in the root namespace."""
    import re

    regex = ""
    for token in (("" if key.startswith("/") else "/") + key).split("/")[1:]:
        if token == "**":
            regex += "(?:/[^/]+)*"
        else:
            regex += "/" + "[^/]*".join(re.escape(t) for t in token.split("*"))
    return re.fullmatch(regex, fqn) is not None


CONFIGURED_NOTE = (
    " Fixed while the node is configured: set it while unconfigured (ros2 lifecycle set <node>"
    " cleanup), it applies at the next configure."
)


def declare_parameters(node, check: bool = True) -> dict[str, Any]:
    """Declare every parameter of :data:`PARAMETERS` on an rclpy ``node``; return the values.

    Values come from the node's overrides (``--params-file``, ``-p``, launch), else defaults.
    Only ``startup`` parameters get a read-only descriptor; the other ``read_only`` ones are
    refused by the node while it is configured (their description says so).

    Args:
        node: an rclpy node.
        check: run :func:`validate` (model included) and raise on problems. The lifecycle
            node passes False and validates in its ``configure`` transition instead.

    Raises:
        ValueError: a value rclpy refuses (type, range), or (``check``) the problems
            :func:`validate` reports (all listed, one per line).
    """
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    values: dict[str, Any] = {}
    for spec in PARAMETERS:
        desc = spec.description
        if spec.choices:
            desc += f" One of: {', '.join(spec.choices)}."
        if spec.read_only and not spec.startup:
            desc += CONFIGURED_NOTE
        descriptor = ParameterDescriptor(
            name=spec.name,
            description=desc,
            read_only=spec.startup,
            additional_constraints=f"one of {', '.join(spec.choices)}" if spec.choices else "",
        )
        if spec.type is float and spec.min_value is not None:
            descriptor.floating_point_range = [
                FloatingPointRange(
                    from_value=float(spec.min_value), to_value=float(spec.max_value), step=0.0
                )
            ]
        elif spec.type is int and spec.min_value is not None:
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value), step=1)
            ]
        try:
            param = node.declare_parameter(spec.name, spec.default, descriptor)
        except Exception as exc:  # rclpy's InvalidParameter{Type,Value}Exception and kin
            raise ValueError(f"invalid parameters:\n  {spec.name}: {exc}") from exc
        values[spec.name] = param.value
    problems = validate(values) if check else []
    if problems:
        raise ValueError("invalid parameters:\n  " + "\n  ".join(problems))
    return values


#: parameters rclpy itself declares (or reads) on every node
_RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service")


def unknown_parameters(names) -> list[str]:
    """The names in ``names`` that are neither a parameter of :data:`PARAMETERS` nor one of
    rclpy's own (``use_sim_time``, ``qos_overrides.*``, ...), each with a "did you mean" hint
    when one is close: for overrides that rclpy would silently ignore."""
    import difflib

    out = []
    for name in sorted(set(names)):
        if name in SPECS or name in _RCLPY_PARAMETERS or name.startswith("qos_overrides."):
            continue
        close = difflib.get_close_matches(name, list(SPECS), n=1)
        out.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return out


_YAML_HEADER = """\
# Parameters of joint_perception's perception_node, generated from the parameter table
# (joint_perception/ros/parameters.py: `python -m joint_perception.ros.parameters > this file`).
# Loaded by launch/perception.launch.py (params_file); every value here is the node's default.
# The key `/**` matches the node under any namespace (`namespace:=front`, multi_camera.launch.py);
# a file for one node only would use its full name, e.g. `/front/perception_node:`.
# "read-only" values are fixed at start-up; "read-only while configured" ones can be set while
# the managed node is unconfigured and apply at its next configure; the others can change with
# `ros2 param set` at any time. Bad values make configure fail with a message naming them.
"""

#: Top-level key of the generated parameter file: matches every node, any namespace.
YAML_NODE_KEY = "/**"


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _yaml_comment(spec: ParamSpec, indent: str, width: int = 100) -> list[str]:
    import textwrap

    notes = []
    if spec.choices:
        notes.append("one of: " + ", ".join(spec.choices))
    elif spec.min_value is not None or spec.max_value is not None:
        notes.append(f"range [{spec.min_value}, {spec.max_value}]")
    if spec.startup:
        notes.append("read-only")
    elif spec.read_only:
        notes.append("read-only while configured")
    else:
        notes.append("changeable at run time")
    text = f"{spec.description} ({'; '.join(notes)})"
    return [
        f"{indent}# {line}"
        for line in textwrap.wrap(text, width - len(indent) - 2, break_on_hyphens=False)
    ]


def yaml_document(node_key: str = YAML_NODE_KEY) -> str:
    """``config/perception.yaml`` from :data:`PARAMETERS`: every parameter with its default and
    its description as a comment, dotted names as nested mappings, under ``node_key`` (default
    ``/**``: any node in any namespace, as rclpy matches parameter-file keys). The shipped file
    is this text; a test checks it."""
    key = f'"{node_key}"' if node_key.startswith("*") else node_key  # "*" starts a YAML alias
    lines = [_YAML_HEADER.rstrip("\n"), f"{key}:", "  ros__parameters:"]
    open_path: list[str] = []
    for spec in PARAMETERS:
        *parents, key = spec.name.split(".")
        common = 0
        while common < min(len(parents), len(open_path)) and parents[common] == open_path[common]:
            common += 1
        open_path = open_path[:common]
        for p in parents[common:]:
            lines.append("    " + "  " * len(open_path) + f"{p}:")
            open_path.append(p)
        indent = "    " + "  " * len(open_path)
        lines += _yaml_comment(spec, indent)
        lines.append(f"{indent}{key}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(yaml_document(), end="")
