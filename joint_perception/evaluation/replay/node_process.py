"""The perception node under test: ``perception_node`` as a child process on loopback DDS.

It runs in a private namespace with its inputs remapped to the bag's topics
(:func:`input_remaps`), logs to a file, and is stopped with SIGINT (SIGKILL after a timeout).
It runs in its own process group (a Ctrl-C in the terminal reaches replay only, which then
stops the node in order) and, on Linux, with a parent-death signal: if ``replay`` dies, even by
``kill -9``, the kernel sends the node SIGKILL, so no node is left running to publish into the
next replay (:func:`die_with_parent`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from joint_perception.allocator import malloc_environment
from joint_perception.evaluation.replay.topics import ReplayTopics
from joint_perception.ros.local_dds import loopback_environment

NODE_NAME = "perception_node"  # its name in the namespace (the /diagnostics status names it)


def input_remaps(topics: ReplayTopics, compressed: bool) -> dict[str, str]:
    """``{node input name: bag topic}``: ``image`` (or ``image/compressed``) and
    ``camera_info``."""
    image = "image/compressed" if compressed else "image"
    return {image: topics.input_image(compressed), "camera_info": topics.camera_info}


def node_command(
    namespace: str, remaps: dict[str, str], params_file: str | None, overrides: list[str]
) -> list[str]:
    """The ``python -m joint_perception.ros.perception_node --ros-args ...`` command line."""
    cmd = [
        sys.executable,
        "-m",
        "joint_perception.ros.perception_node",
        "--ros-args",
        "-r",
        f"__ns:={namespace}",
    ]
    for src, dst in remaps.items():
        cmd += ["-r", f"{src}:={dst}"]
    if params_file:
        cmd += ["--params-file", str(params_file)]
    for ov in overrides:
        cmd += ["-p", ov]
    return cmd


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``); None on other systems.

    The signal follows the *thread* that started the child: start it from a thread that
    lives as long as the parent (replay starts it from the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died before prctl: do not start orphaned
            os._exit(126)

    return preexec


class NodeProcess:
    """``perception_node`` in a subprocess on loopback DDS; stopped with SIGINT.

    Args:
        namespace: node namespace (outputs appear under it).
        remaps: ``{relative input name: absolute bag topic}``.
        params_file: optional ROS 2 parameter YAML.
        overrides: ``["name:=value", ...]`` passed as ``-p``.
        log_path: file receiving the node's stdout and stderr.
        domain_id: ROS_DOMAIN_ID shared with the recorder.
    """

    def __init__(
        self,
        namespace: str,
        remaps: dict[str, str],
        params_file: str | None,
        overrides: list[str],
        log_path: Path,
        domain_id: int,
    ) -> None:
        self.cmd = node_command(namespace, remaps, params_file, overrides)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=malloc_environment(loopback_environment(domain_id)),
            start_new_session=True,  # own process group
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - prctl only, no locks taken
        )

    def check_alive(self) -> None:
        """Raise RuntimeError with the node's log tail if it exited."""
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"perception_node exited with code {self.proc.returncode}:\n{tail}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT, wait ``timeout`` s (then SIGKILL); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
