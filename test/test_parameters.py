"""Parameter table, validation, YAML defaults, declaration on a real rclpy node, QoS."""

from __future__ import annotations

import math

import pytest

from joint_perception.ros import parameters as P


def test_defaults_are_valid_and_cover_the_brief():
    assert P.validate(P.defaults(), check_model=False) == []
    required = {
        "model",
        "backend",
        "device",
        "engine_cache_dir",
        "precision",
        "latency_target_ms",
        "input_transport",
        "camera_info_sync",
        "sync_slop_s",
        "output_resolution",
        "min_depth",
        "max_depth",
        "publish_depth",
        "publish_labels",
        "publish_color",
        "color_overlay_alpha",
        "publish_normals",
        "publish_points",
        "points_decimation",
        "publish_confidence",
        "diagnostics_period_s",
        "warn_throttle_s",
        "qos.input.reliability",
        "qos.input.depth",
        "qos.output.reliability",
        "qos.output.durability",
        "qos.output.depth",
        "qos.input.durability",
    }
    assert required <= set(P.SPECS)
    for spec in P.PARAMETERS:
        assert spec.description.endswith((".", ")")), spec.name
        if spec.min_value is not None:
            assert spec.min_value <= spec.default <= spec.max_value, spec.name
        if spec.choices is not None:
            assert spec.default in spec.choices, spec.name


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"backend": "cuda"}, "backend: 'cuda' is not one of " + ", ".join(P.BACKENDS)),
        ({"min_depth": 5.0, "max_depth": 2.0}, "min_depth: 5.0 must be smaller than max_depth 2.0"),
        ({"min_depth": 3.0, "max_depth": 3.0}, "must be smaller than max_depth"),
        ({"points_decimation": 0}, "points_decimation: 0 is below the minimum 1"),
        ({"color_overlay_alpha": 1.5}, "color_overlay_alpha: 1.5 is above the maximum 1.0"),
        ({"publish_depth": "yes"}, "publish_depth: expected bool, got str"),
        ({"points_decimation": 2.0}, "points_decimation: expected int, got float"),
        ({"max_depth": math.nan}, "max_depth: must be finite"),
        ({"input_transport": "theora"}, "input_transport: 'theora' is not one of raw, compressed"),
        ({"precision": "bf16"}, "precision: 'bf16' is not one of fp32, fp16, int8, best"),
        ({"latency_target_ms": -1.0}, "latency_target_ms: -1.0 is below the minimum 0.0"),
        ({"qos.input.reliability": "fast"}, "qos.input.reliability: 'fast' is not one of"),
        ({"no_such": 1}, "no_such: unknown parameter"),
    ],
)
def test_validate_refuses_bad_values_with_a_clear_message(params, needle):
    problems = P.validate(params, check_model=False)
    assert len(problems) == 1, problems
    assert needle in problems[0]


def test_validate_accepts_int_for_float_and_one_sided_depth_range():
    assert P.validate({"min_depth": 1, "max_depth": 0.0}, check_model=False) == []


def test_validate_reports_a_missing_model_file(tmp_path):
    missing = tmp_path / "nope" / "model.onnx"
    problems = P.validate({"model": str(missing)})
    assert len(problems) == 1 and problems[0].startswith("model:")
    assert "nope" in problems[0]


def test_yaml_repeats_every_default(repo_root):
    values = P.load_yaml_parameters(repo_root / "config" / "perception.yaml")
    assert values == P.defaults()
    text = (repo_root / "config" / "perception.yaml").read_text()
    # every parameter is documented by a comment line right above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if ":" in line and not line.lstrip().startswith("#") and line.strip().split(":")[1].strip():
            assert lines[i - 1].lstrip().startswith("#"), line


def test_load_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("other_node:\n  ros__parameters: {a: 1}\n")
    with pytest.raises(ValueError, match=r"p\.yaml: no 'perception_node: ros__parameters:'"):
        P.load_yaml_parameters(bad)
    with pytest.raises(FileNotFoundError, match="parameter file not found"):
        P.load_yaml_parameters(tmp_path / "missing.yaml")


@pytest.mark.ros
def test_declare_parameters_on_a_real_node(tmp_path):
    import rclpy
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        # model "realtime" may not be shipped yet: an existing directory passes the model check
        node = Node(
            "param_test2",
            context=ctx,
            parameter_overrides=[
                Parameter("model", value=str(tmp_path)),
                Parameter("backend", value="torch"),
                Parameter("points_decimation", value=4),
            ],
        )
        values = P.declare_parameters(node)
        assert values["backend"] == "torch" and values["points_decimation"] == 4
        desc = node.describe_parameter("points_decimation")
        assert desc.read_only is False
        assert (desc.integer_range[0].from_value, desc.integer_range[0].to_value) == (1, 16)
        desc = node.describe_parameter("backend")  # read by configure: settable unconfigured
        assert desc.read_only is False and "tensorrt" in desc.description
        assert P.CONFIGURED_NOTE.strip() in desc.description
        assert node.describe_parameter("autostart").read_only is True  # read at start-up
        rng = node.describe_parameter("color_overlay_alpha").floating_point_range[0]
        assert (rng.from_value, rng.to_value) == (0.0, 1.0)
        node.destroy_node()

        node = Node(
            "param_test3",
            context=ctx,
            parameter_overrides=[
                Parameter("model", value=str(tmp_path)),
                Parameter("min_depth", value=4.0),
                Parameter("max_depth", value=1.0),
            ],
        )
        with pytest.raises(ValueError, match="min_depth: 4.0 must be smaller than max_depth 1.0"):
            P.declare_parameters(node)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_qos_profiles_follow_rep2003_and_overrides():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from joint_perception.ros.qos import input_qos, make_qos, output_qos

    q_in = input_qos(P.defaults())
    assert q_in.reliability == ReliabilityPolicy.BEST_EFFORT and q_in.depth == 1
    q_out = output_qos(P.defaults())
    assert q_out.reliability == ReliabilityPolicy.RELIABLE and q_out.depth == 2
    q = output_qos(
        {
            "qos.output.reliability": "best_effort",
            "qos.output.durability": "transient_local",
            "qos.output.depth": 7,
        }
    )
    assert (q.reliability, q.durability, q.depth) == (
        ReliabilityPolicy.BEST_EFFORT,
        DurabilityPolicy.TRANSIENT_LOCAL,
        7,
    )
    with pytest.raises(ValueError, match="unknown QoS reliability 'sometimes'"):
        make_qos("sometimes", "volatile", 1)
    with pytest.raises(ValueError, match="QoS depth must be >= 1"):
        make_qos("reliable", "volatile", 0)


def test_qos_defaults_come_from_the_parameter_table(monkeypatch):
    """ros/qos.py restates no default: change the table and the profiles follow."""
    import dataclasses

    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from joint_perception.ros import qos

    changed = {
        "qos.input.reliability": "reliable",
        "qos.input.depth": 5,
        "qos.output.durability": "transient_local",
        "qos.output.depth": 9,
    }
    table = tuple(
        dataclasses.replace(s, default=changed[s.name]) if s.name in changed else s
        for s in P.PARAMETERS
    )
    monkeypatch.setattr(P, "PARAMETERS", table)
    q_in, q_out = qos.input_qos({}), qos.output_qos({"qos.output.depth": 3})
    assert (q_in.reliability, q_in.depth) == (ReliabilityPolicy.RELIABLE, 5)
    assert (q_out.durability, q_out.depth) == (DurabilityPolicy.TRANSIENT_LOCAL, 3)
    # every policy name the table accepts maps to an rclpy policy
    for name in P.RELIABILITIES:
        assert qos.make_qos(name, "volatile", 1).reliability.name.lower() == name
    for name in P.DURABILITIES:
        assert qos.make_qos("reliable", name, 1).durability.name.lower() == name


def test_yaml_comments_repeat_the_table(repo_root):
    """Each value in config/perception.yaml is documented by the table's description and says
    whether it is read-only (the comments above it, joined)."""
    lines = (repo_root / "config" / "perception.yaml").read_text().splitlines()
    path: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    seen = set()
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        path = [(d, k) for d, k in path if d < indent]
        if not value.strip():
            path.append((indent, key))
            continue
        name = ".".join([k for _, k in path if k not in ("/**", "ros__parameters")] + [key])
        j = i
        while j > 0 and lines[j - 1].lstrip().startswith("#"):
            j -= 1
        comment = " ".join(c.strip().lstrip("#").strip() for c in lines[j:i])
        spec = P.SPECS[name]
        assert spec.description in comment, name
        assert ("read-only" in comment) == spec.read_only, name
        seen.add(name)
    assert seen == set(P.SPECS)


def test_shipped_yaml_is_generated_from_the_table(repo_root):
    """config/perception.yaml is exactly ``python -m joint_perception.ros.parameters``: one home
    per fact (regenerate it after changing the table)."""
    assert (repo_root / "config" / "perception.yaml").read_text() == P.yaml_document()


def test_publish_parameters_come_from_the_topic_table():
    from joint_perception.ros.topics import OUTPUT_TOPICS

    publish = {s.name: s for s in P.PARAMETERS if s.name.startswith("publish_")}
    assert set(publish) == {t.param for t in OUTPUT_TOPICS}
    for t in OUTPUT_TOPICS:
        assert publish[t.param].default is t.default and t.name in publish[t.param].description
