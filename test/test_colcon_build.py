"""The package built the way a robot builds it: ``colcon build`` (colcon-core and colcon-ros from
the package index, the ``test`` extra of setup.py) into a scratch workspace holding a copy of
the tracked files, then the install tree checked: share/ (package.xml, launch files, config,
RViz config, shipped model), the console scripts in ``lib/joint_perception/`` (where
``ros2 run`` looks) and the ament index marker (how ``ros2 pkg`` / ``get_package_share_directory``
find the package)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

pytest.importorskip(
    "colcon_ros",
    reason="colcon is not installed (pip install -e '.[test]' installs colcon-core/colcon-ros)",
)

PACKAGE = "joint_perception"


def _console_scripts(repo_root: Path) -> list[str]:
    return re.findall(
        r'"(\w+) = joint_perception[\w.]*:main"', (repo_root / "setup.py").read_text()
    )


def _copy_tracked_files(repo_root: Path, dest: Path) -> None:
    """What a ``git clone`` into ``src/`` would hold (no .venv, out/, build/ ...)."""
    if shutil.which("git") is None or not (repo_root / ".git").exists():
        pytest.skip("needs a git checkout to know the tracked files")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo_root,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = repo_root / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


@pytest.fixture(scope="module")
def install_tree(repo_root, tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("colcon_ws")
    _copy_tracked_files(repo_root, ws / "src" / PACKAGE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLCON", "AMENT"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from colcon_core.command import main; sys.exit(main())",
        "--log-base",
        str(ws / "log"),
        "build",
        "--base-paths",
        str(ws / "src"),
        "--build-base",
        str(ws / "build"),
        "--install-base",
        str(ws / "install"),
        "--event-handlers",
        "console_direct-",
    ]
    done = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"colcon build failed:\n{done.stdout}\n{done.stderr}"
    assert f"Finished <<< {PACKAGE}" in done.stdout + done.stderr
    return ws / "install" / PACKAGE


def test_share_holds_package_xml_launch_config_and_model(install_tree, repo_root):
    share = install_tree / "share" / PACKAGE
    assert (share / "package.xml").read_bytes() == (repo_root / "package.xml").read_bytes()
    for launch in sorted((repo_root / "launch").glob("*.launch.py")):
        assert (share / "launch" / launch.name).is_file(), launch.name
    assert (share / "launch" / "multi_camera.launch.py").is_file()
    shipped = (share / "config" / "perception.yaml").read_text()
    assert shipped == (repo_root / "config" / "perception.yaml").read_text()
    assert (share / "config" / "perception.rviz").is_file()
    assert (share / "models" / "realtime" / "metadata.json").is_file()
    assert (share / "models" / "realtime" / "model.onnx").is_file()


def test_console_scripts_are_where_ros2_run_looks(install_tree, repo_root):
    lib = install_tree / "lib" / PACKAGE
    scripts = _console_scripts(repo_root)
    assert "perception_node" in scripts
    for name in scripts:
        script = lib / name
        assert script.is_file() and os.access(script, os.X_OK), name
        # colcon writes the interpreter that ran it (docs: README "On a robot")
        shebang = script.read_text().splitlines()[0]
        assert shebang == f"#!{sys.executable}", (name, shebang)


def test_ament_index_marker_and_python_package(install_tree):
    marker = install_tree / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE
    assert marker.is_file()
    site = list(install_tree.glob("lib/python3*/site-packages"))
    assert len(site) == 1, site
    pkg = site[0] / PACKAGE
    assert (pkg / "__init__.py").is_file()
    assert (pkg / "ros" / "fastdds_loopback.xml").is_file()
    assert not (pkg.parent / "test").exists()  # tests are not installed
    # the installed package (not the checkout) is what an installed node imports
    env = dict(os.environ, PYTHONPATH=str(site[0]), PYTHONNOUSERSITE="1")
    out = subprocess.run(
        [sys.executable, "-c", "import joint_perception as j; print(j.__file__)"],
        cwd=install_tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(out).is_relative_to(site[0]), out
