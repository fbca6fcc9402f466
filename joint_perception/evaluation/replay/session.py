"""A replay session: the node process and the recorder, matched, sending schedules.

:class:`ReplaySession` starts both on one private loopback DDS domain, waits until their
topics match, and :meth:`ReplaySession.run` sends one schedule and waits for its outputs, so a
fixed-rate run and every peak-search trial share one node (no restart between trials).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from joint_perception.evaluation.rates import ProcessMonitor
from joint_perception.evaluation.replay.bag_input import InputFrame
from joint_perception.evaluation.replay.node_process import NodeProcess, input_remaps
from joint_perception.evaluation.replay.options import ReplayOptions
from joint_perception.evaluation.replay.pacing import publish_frames
from joint_perception.evaluation.replay.recorder import Recorder
from joint_perception.evaluation.replay.topics import primary_output
from joint_perception.ros.local_dds import loopback_environment

_DDS_VARIABLES = (
    "RMW_IMPLEMENTATION",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "ROS_AUTOMATIC_DISCOVERY_RANGE",
    "ROS_DOMAIN_ID",
)


def _use_loopback_dds() -> int:
    """Put this process on a loopback-only DDS domain (before rclpy starts); returns its id."""
    env = loopback_environment()
    os.environ.update({k: env[k] for k in _DDS_VARIABLES})
    return int(env["ROS_DOMAIN_ID"])


class ReplaySession:
    """The node subprocess and the recorder, matched and ready to receive frames.

    Use as a context manager; :meth:`run` sends one schedule and waits for its outputs, so a
    fixed-rate run and each peak-search trial share one node (no restart between trials).
    """

    def __init__(self, opts: ReplayOptions, image_msgtype: str, bag_dir: Path) -> None:
        self.opts = opts
        self.image_msgtype = image_msgtype
        self.bag_dir = bag_dir
        self.exit_code: int | None = None
        self.all_sent: set[int] = set()

    def __enter__(self) -> ReplaySession:
        import rclpy

        opts = self.opts
        domain_id = _use_loopback_dds()
        overrides = list(opts.overrides)
        if opts.compressed:
            overrides.append("input_transport:=compressed")
        remaps = input_remaps(opts.topics, opts.compressed)
        self.node = NodeProcess(
            opts.namespace,
            remaps,
            opts.params_file,
            overrides,
            Path(opts.out) / "node.log",
            domain_id,
        )
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, domain_id=domain_id)  # not sys.argv
        self.recorder = None
        try:
            inputs = {
                "image": opts.topics.input_image(opts.compressed),
                "camera_info": opts.topics.camera_info,
            }
            self.recorder = Recorder(
                self.context,
                opts.namespace,
                inputs,
                self.image_msgtype,
                self.bag_dir,
                disk_reserve_bytes=int(opts.disk_reserve_mb * 2**20),
            )
            self._wait_until_matched()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_until_matched(self) -> None:
        """Wait until the node subscribes to the inputs and publishes an output.

        Raises:
            RuntimeError: the node exited, or ``startup_timeout_s`` passed.
        """
        deadline = time.monotonic() + self.opts.startup_timeout_s
        while not self.recorder.matched():
            self.node.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"perception_node topics did not match within "
                    f"{self.opts.startup_timeout_s} s; see {self.node.log_path}"
                )
            time.sleep(0.1)
        time.sleep(0.5)  # let the remaining endpoints match

    @property
    def primary(self) -> str:
        """The output that latency and missed frames are measured on."""
        rel = primary_output(self.recorder.active_outputs())
        if rel is None:
            raise RuntimeError("perception_node publishes no output topic")
        return rel

    def run(
        self, frames: list[InputFrame], schedule: list[tuple[int, int]], rate_hz: float | None
    ) -> tuple[dict[int, float], dict, float]:
        """Send ``schedule`` and wait until every output arrived, or no new output came for
        ``settle_s`` (dropped frames never arrive), or ``drain_timeout_s`` passed.

        Returns:
            ``(sent, node process measurements, elapsed s)``.
        """
        opts = self.opts
        t0 = time.monotonic()
        with ProcessMonitor(self.node.proc.pid) as monitor:
            sent = publish_frames(self.recorder, frames, rate_hz, opts.progress, schedule)
            self.all_sent.update(sent)
            self._drain(sent)
        return sent, monitor.result(), time.monotonic() - t0

    def _drain(self, sent: dict[int, float]) -> None:
        """Wait for the outputs of ``sent`` (see :meth:`run`)."""
        opts = self.opts
        deadline = time.monotonic() + opts.drain_timeout_s
        last_n, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            self.node.check_alive()
            n = self.recorder.count(self.primary, sent)
            if n == len(sent):
                break
            if n != last_n:
                last_n, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > opts.settle_s:
                break
            time.sleep(0.05)

    def wait_for_diagnostics(self, timeout_s: float = 5.0) -> None:
        """Wait for one more /diagnostics message (stage times after the last output)."""
        n = len(self.recorder.diagnostics)
        deadline = time.monotonic() + timeout_s
        while len(self.recorder.diagnostics) <= n and time.monotonic() < deadline:
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        import rclpy

        self.exit_code = self.node.stop()
        if self.recorder is not None:
            self.recorder.close()
        rclpy.try_shutdown(context=self.context)
