"""launch/perception.launch.py and launch/multi_camera.launch.py, executed against minimal
stand-ins for launch/launch_ros.

launch_ros is not installable from the package index here, so the launch files run with small
recording stand-ins injected into ``sys.modules``; the tests check what they would start: an
existing console script, parameter names the node declares, files that exist, the remappings,
and which parameters the launch arguments override (only those given). The same files were
also run with the real launch / launch_ros (docs/ros.md, "Verified with the real tools").
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest

from joint_perception.ros.parameters import SPECS, YAML_NODE_KEY, load_yaml_parameters


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(_Recorder):
    def perform(self, context):
        return context[self.args[0]]


class ParameterValue(_Recorder):
    pass


def _stand_in_modules(share_dir: Path) -> dict[str, types.ModuleType]:
    mods = {}

    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        mods[name] = m
        return m

    mod("launch", LaunchDescription=_Recorder)
    mod(
        "launch.actions",
        DeclareLaunchArgument=type("DeclareLaunchArgument", (_Recorder,), {}),
        OpaqueFunction=type("OpaqueFunction", (_Recorder,), {}),
    )
    mod("launch.substitutions", LaunchConfiguration=LaunchConfiguration)
    mod("launch_ros")
    mod(
        "launch_ros.actions",
        Node=type("Node", (_Recorder,), {}),
        LifecycleNode=type("LifecycleNode", (_Recorder,), {}),
    )
    mod("launch_ros.parameter_descriptions", ParameterValue=ParameterValue)
    mod("ament_index_python")
    mod("ament_index_python.packages", get_package_share_directory=lambda pkg: str(share_dir))
    return mods


def _load(repo_root, monkeypatch, name):
    for mod_name, module in _stand_in_modules(repo_root).items():
        monkeypatch.setitem(sys.modules, mod_name, module)
    spec = importlib.util.spec_from_file_location(name, repo_root / "launch" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _declared(description) -> dict[str, dict]:
    return {
        e.args[0]: e.kwargs
        for e in description.args[0]
        if type(e).__name__ == "DeclareLaunchArgument"
    }


def _context(declared: dict, **given) -> dict:
    """Launch configurations: declared defaults, then the arguments given."""
    return {**{k: kw.get("default_value", "") for k, kw in declared.items()}, **given}


def _start(description, context):
    (opaque,) = [e for e in description.args[0] if type(e).__name__ == "OpaqueFunction"]
    return opaque.kwargs["function"](context)


@pytest.fixture
def single(repo_root, monkeypatch):
    return _load(repo_root, monkeypatch, "perception.launch")


@pytest.fixture
def multi(repo_root, monkeypatch):
    return _load(repo_root, monkeypatch, "multi_camera.launch")


def _console_scripts(repo_root: Path) -> set[str]:
    text = (repo_root / "setup.py").read_text()
    return set(re.findall(r'"(\w+) = joint_perception[\w.]*:main"', text))


def test_launch_arguments_and_defaults(single, repo_root):
    declared = _declared(single.generate_launch_description())
    assert set(declared) == {
        "namespace",
        "image_topic",
        "camera_info_topic",
        "params_file",
        "model",
        "backend",
        "precision",
        "autostart",
        "use_sim_time",
    }
    params_file = Path(declared["params_file"]["default_value"])
    assert params_file == repo_root / "config" / "perception.yaml" and params_file.is_file()
    # model / backend / precision / autostart: empty = the params file's value
    overridable = ("model", "backend", "precision", "autostart")
    assert all(declared[k]["default_value"] == "" for k in overridable)
    assert all(kw.get("description") for kw in declared.values())


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, set()),
        ({"model": "/models/mine"}, {"model"}),
        ({"backend": "onnxruntime", "autostart": "false"}, {"backend", "autostart"}),
        ({"backend": "tensorrt", "precision": "int8"}, {"backend", "precision"}),
    ],
)
def test_model_and_backend_override_the_params_file_only_when_given(single, given, expected):
    description = single.generate_launch_description()
    (node,) = _start(description, _context(_declared(description), **given))
    params_file, overrides = node.kwargs["parameters"]
    assert params_file.args == ("params_file",)  # the file first, the overrides after it
    assert set(overrides) - {"use_sim_time"} == expected
    for name in expected:
        value = overrides[name]
        assert value.args == (given[name],)
        assert value.kwargs["value_type"] is (bool if SPECS[name].type is bool else str)
    assert set(overrides) - {"use_sim_time"} <= set(SPECS)


def test_launch_node_names_an_existing_script_and_declared_parameters(single, repo_root):
    description = single.generate_launch_description()
    (node,) = _start(description, _context(_declared(description)))
    assert type(node).__name__ == "LifecycleNode"  # a managed node: ros2 lifecycle works on it
    kw = node.kwargs
    assert kw["package"] == "joint_perception"
    assert kw["executable"] in _console_scripts(repo_root)
    cfg = configparser.ConfigParser()
    cfg.read(repo_root / "setup.cfg")
    assert cfg["install"]["install_scripts"] == "$base/lib/joint_perception"  # ros2 run finds it
    module, func = re.search(
        rf'"{kw["executable"]} = ([\w.]+):(\w+)"', (repo_root / "setup.py").read_text()
    ).groups()
    assert Path(repo_root, *module.split(".")).with_suffix(".py").is_file() and func == "main"
    assert kw["name"] == "perception_node"
    assert kw["namespace"].args == ("namespace",)

    # the YAML the launch file loads by default only names declared parameters, under a key
    # that matches the node in any namespace
    shipped = repo_root / "config" / "perception.yaml"
    assert set(load_yaml_parameters(shipped)) <= set(SPECS)
    assert f"\n{YAML_NODE_KEY}:\n" in shipped.read_text()

    remapped = {src: dst for src, dst in kw["remappings"]}
    assert set(remapped) == {"image", "image/compressed", "camera_info"}
    assert remapped["image"].args == ("image_topic",)
    assert remapped["image/compressed"][0].args == ("image_topic",)
    assert remapped["image/compressed"][1] == "/compressed"
    assert remapped["camera_info"].args == ("camera_info_topic",)


def test_multi_camera_launch_starts_one_process_for_all_cameras(multi):
    description = multi.generate_launch_description()
    declared = _declared(description)
    assert "default_value" not in declared["cameras"]  # required
    context = _context(
        declared,
        cameras="front, rear",
        namespace="robot",
        image_topic="/{camera}/color/image_raw",
        model="/m",
    )
    (node,) = _start(description, context)
    kw = node.kwargs
    assert kw["executable"] == "perception_node" and "name" not in kw
    assert kw["arguments"] == ["--cameras", "front,rear"]
    assert set(kw["parameters"][1]) == {"model", "use_sim_time"}
    # fully qualified sources: each rule applies to one camera's node
    assert kw["remappings"] == [
        ("/robot/front/image", "/front/color/image_raw"),
        ("/robot/front/image/compressed", "/front/color/image_raw/compressed"),
        ("/robot/rear/image", "/rear/color/image_raw"),
        ("/robot/rear/image/compressed", "/rear/color/image_raw/compressed"),
    ]
    with pytest.raises(RuntimeError, match="cameras:="):
        _start(description, _context(declared, cameras=" , "))


def test_multi_camera_relative_topics_stay_in_the_camera_namespace(multi):
    rules = multi.camera_remappings(["left"], "", "color/image_raw", "color/camera_info")
    assert rules == [
        ("/left/image", "/left/color/image_raw"),
        ("/left/image/compressed", "/left/color/image_raw/compressed"),
        ("/left/camera_info", "/left/color/camera_info"),
    ]
    assert multi.camera_remappings(["left"], "", "image", "camera_info") == []


def test_setup_installs_launch_and_config(repo_root):
    text = (repo_root / "setup.py").read_text()
    assert '"launch/*.py"' in text and '"config/*.yaml"' in text and '"config/*.rviz"' in text
