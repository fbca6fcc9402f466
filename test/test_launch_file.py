"""launch/perception.launch.py, executed against minimal stand-ins for launch/launch_ros.

launch_ros is not installable here, so the launch file runs with small recording stand-ins
injected into ``sys.modules``; the test checks what it would start: an existing console script,
parameter names the node declares, files that exist and the remappings.
"""

from __future__ import annotations

import configparser
import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest

from joint_perception.ros.parameters import SPECS, load_yaml_parameters


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _Substitution(_Recorder):
    pass


def _stand_in_modules(share_dir: Path) -> dict[str, types.ModuleType]:
    mods = {}

    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        mods[name] = m
        return m

    mod("launch", LaunchDescription=_Recorder)
    mod("launch.actions", DeclareLaunchArgument=_Recorder)
    mod(
        "launch.substitutions",
        LaunchConfiguration=type("LaunchConfiguration", (_Substitution,), {}),
        PythonExpression=type("PythonExpression", (_Substitution,), {}),
    )
    mod("launch_ros")
    mod("launch_ros.actions", Node=type("Node", (_Recorder,), {}))
    mod(
        "launch_ros.parameter_descriptions", ParameterValue=type("ParameterValue", (_Recorder,), {})
    )
    mod("ament_index_python")
    mod("ament_index_python.packages", get_package_share_directory=lambda pkg: str(share_dir))
    return mods


@pytest.fixture
def description(repo_root, monkeypatch):
    for name, module in _stand_in_modules(repo_root).items():
        monkeypatch.setitem(sys.modules, name, module)
    path = repo_root / "launch" / "perception.launch.py"
    spec = importlib.util.spec_from_file_location("perception_launch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _console_scripts(repo_root: Path) -> set[str]:
    text = (repo_root / "setup.py").read_text()
    return set(re.findall(r'"(\w+) = joint_perception[\w.]*:main"', text))


def test_launch_arguments_and_defaults(description, repo_root):
    entities = description.args[0]
    declared = {
        e.args[0]: e.kwargs
        for e in entities
        if type(e).__name__ == "_Recorder" and e.args and "default_value" in e.kwargs
    }
    assert set(declared) == {
        "namespace",
        "image_topic",
        "camera_info_topic",
        "params_file",
        "model",
        "backend",
        "precision",
        "use_sim_time",
    }
    params_file = Path(declared["params_file"]["default_value"])
    assert params_file == repo_root / "config" / "perception.yaml" and params_file.is_file()
    assert declared["backend"]["default_value"] in SPECS["backend"].choices
    assert declared["precision"]["default_value"] == SPECS["precision"].default
    assert declared["model"]["default_value"] == SPECS["model"].default
    assert all(kw.get("description") for kw in declared.values())


def test_launch_node_names_an_existing_script_and_declared_parameters(description, repo_root):
    nodes = [e for e in description.args[0] if type(e).__name__ == "Node"]
    assert len(nodes) == 1
    kw = nodes[0].kwargs
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

    params_file, overrides = kw["parameters"]
    assert params_file.args == ("params_file",)
    assert set(overrides) - {"use_sim_time"} <= set(SPECS)
    # the YAML the launch file loads by default only names declared parameters
    assert set(load_yaml_parameters(repo_root / "config" / "perception.yaml")) <= set(SPECS)

    remapped = {src: dst for src, dst in kw["remappings"]}
    assert set(remapped) == {"image", "image/compressed", "camera_info"}
    assert remapped["image"].args == ("image_topic",)
    assert remapped["camera_info"].args == ("camera_info_topic",)


def test_setup_installs_launch_and_config(repo_root):
    text = (repo_root / "setup.py").read_text()
    assert '"launch/*.py"' in text and '"config/*.yaml"' in text
