"""The replay side of the ROS graph: publish the inputs, record every output to a rosbag2.

:class:`Recorder` is one rclpy node. Its callbacks only note each output's arrival time per
header stamp and queue the raw CDR; a writer thread writes the output bag (MCAP), so bag
writing delays neither the arrival times nor, through reliable QoS back-pressure, the node.
The writer never fills the disk: it stops before the file system would have less than a
reserve left (or at the first write error) and says why in :attr:`Recorder.write_error`.
"""

from __future__ import annotations

import errno
import queue
import shutil
import threading
import time
from collections import defaultdict
from pathlib import Path

from joint_perception.evaluation.replay.cdr import header_from_cdr
from joint_perception.evaluation.replay.topics import (
    DIAGNOSTICS_TOPIC,
    DIAGNOSTICS_TYPE,
    OUTPUT_TOPICS,
    namespaced,
)


def get_message(msgtype: str):
    """The rclpy message class of ``pkg/msg/Name`` (rosidl_runtime_py is not a wheel here)."""
    import importlib

    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class Recorder:
    """An rclpy node that publishes the inputs and records every output topic to a rosbag2.

    Messages are kept as raw CDR (no deserialisation on the hot path); :attr:`received` maps
    topic -> {stamp_ns: wall time of arrival}. The callbacks only note the arrival and queue
    the message: a writer thread writes ``bag_dir`` (MCAP), so that writing ~12 MB of outputs
    per 640x480 frame (about 35 ms here) neither delays the arrival times of the following
    messages nor, through reliable QoS back-pressure, the node. Call :meth:`close` to finish
    the bag (it writes what is still queued).

    Before each write the writer checks the free space of the bag's file system: a message
    that would leave less than ``disk_reserve_bytes`` free (or a write that fails) stops the
    recording. Later messages are still timed but not kept (no queue growth);
    :attr:`write_error` says what stopped it and :attr:`bytes_written` how much was written.
    """

    def __init__(
        self,
        context,
        namespace: str,
        input_topics: dict[str, str],
        image_msgtype: str,
        bag_dir: Path,
        disk_reserve_bytes: int = 256 * 2**20,
    ) -> None:
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.node = Node("replay_recorder", context=context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(
            get_message(image_msgtype), input_topics["image"], reliable
        )
        self.pub_info = self.node.create_publisher(
            get_message("sensor_msgs/msg/CameraInfo"), input_topics["camera_info"], reliable
        )
        self.bag_dir = Path(bag_dir)
        self.disk_reserve_bytes = int(disk_reserve_bytes)
        self.write_error: str | None = None
        self.bytes_written = 0
        self.bytes_received = 0  # output messages (CDR bytes), kept or not
        self._open_bag(self.bag_dir)
        self._lock = threading.Lock()
        self.received: dict[str, dict[int, float]] = defaultdict(dict)
        self.frame_ids: dict[str, set[str]] = defaultdict(set)
        self.diagnostics: list[tuple[float, bytes]] = []
        self._subscribe(namespace, reliable)
        self._spin_in_thread(context)

    # ------------------------------------------------------------------ set-up
    def _open_bag(self, bag_dir: Path) -> None:
        """Open the MCAP writer and start the thread that writes the queued messages."""
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self._store = get_typestore(Stores.ROS2_KILTED)
        self._writer = Writer(bag_dir, version=8, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._write_thread = threading.Thread(
            target=self._write_loop, name="replay_bag_writer", daemon=True
        )
        self._write_thread.start()

    def _subscribe(self, namespace: str, reliable) -> None:
        """Subscribe (raw) to every output topic under ``namespace`` and to /diagnostics, each
        with its connection in the output bag."""
        from rclpy.qos import QoSProfile

        self.subs = {}
        self.output_topics = {}
        for rel, msgtype in OUTPUT_TOPICS.items():
            topic = namespaced(namespace, rel)
            self.output_topics[rel] = topic
            conn = self._writer.add_connection(topic, msgtype, typestore=self._store)
            self.subs[rel] = self.node.create_subscription(
                get_message(msgtype), topic, self._callback(rel, conn), reliable, raw=True
            )
        diag_conn = self._writer.add_connection(
            DIAGNOSTICS_TOPIC, DIAGNOSTICS_TYPE, typestore=self._store
        )
        self.node.create_subscription(
            get_message(DIAGNOSTICS_TYPE),
            DIAGNOSTICS_TOPIC,
            self._diag_callback(diag_conn),
            QoSProfile(depth=10),
            raw=True,
        )

    def _spin_in_thread(self, context) -> None:
        from rclpy.executors import SingleThreadedExecutor

        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._spin = threading.Thread(target=self._executor.spin, daemon=True)
        self._spin.start()

    # ------------------------------------------------------------------ callbacks
    def _callback(self, rel, conn):
        def cb(raw: bytes) -> None:
            now = time.time()
            stamp, frame_id = header_from_cdr(raw)
            with self._lock:
                self.received[rel].setdefault(stamp, now)
                self.frame_ids[rel].add(frame_id)
                self.bytes_received += len(raw)
            self._queue.put((conn, time.time_ns(), raw))

        return cb

    def _diag_callback(self, conn):
        def cb(raw: bytes) -> None:
            with self._lock:
                self.diagnostics.append((time.time(), raw))
            self._queue.put((conn, time.time_ns(), raw))

        return cb

    def _write_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.write_error is not None:
                continue  # recording stopped: drop what arrives (no queue growth)
            try:
                self._check_space(len(item[2]))
                self._writer.write(*item)
                self.bytes_written += len(item[2])
            except OSError as exc:
                self.write_error = exc.strerror or str(exc)

    def _check_space(self, nbytes: int) -> None:
        """Raise ``OSError(ENOSPC)`` when writing ``nbytes`` would leave less than the reserve
        free on the bag's file system."""
        free = shutil.disk_usage(self.bag_dir).free
        if free - nbytes < self.disk_reserve_bytes:
            raise OSError(
                errno.ENOSPC,
                f"{free / 2**20:.0f} MiB free on the output disk, "
                f"{self.disk_reserve_bytes / 2**20:.0f} MiB kept free (--disk-reserve-mb)",
            )

    # ------------------------------------------------------------------ queries
    def matched(self) -> bool:
        """Inputs have a subscriber and at least one output has a publisher."""
        return (
            self.pub_image.get_subscription_count() > 0
            and self.pub_info.get_subscription_count() > 0
            and any(s.get_publisher_count() > 0 for s in self.subs.values())
        )

    def active_outputs(self) -> list[str]:
        """Relative output topics that the node publishes."""
        return [rel for rel, s in self.subs.items() if s.get_publisher_count() > 0]

    def arrivals(self, rel: str) -> dict[int, float]:
        """A copy of ``{stamp ns: arrival wall time}`` of output ``rel`` (thread-safe)."""
        with self._lock:
            return dict(self.received.get(rel, {}))

    def frames_received(self) -> int:
        """Frames with at least one output message (the most stamps of any output topic)."""
        with self._lock:
            return max((len(v) for v in self.received.values()), default=0)

    def count(self, rel: str, stamps=None) -> int:
        """Messages received on ``rel`` (only those whose stamp is in ``stamps``, if given)."""
        with self._lock:
            got = self.received.get(rel, {})
            return len(got) if stamps is None else sum(1 for s in stamps if s in got)

    def close(self) -> None:
        """Stop receiving, write the queued messages and close the bag (a failure to close
        it is kept in :attr:`write_error`, not raised)."""
        self._executor.shutdown()
        self._spin.join(5)
        self._queue.put(None)
        self._write_thread.join()
        try:
            self._writer.close()
        except Exception as exc:  # noqa: BLE001 - a writer a failed write left inconsistent
            if self.write_error is None and not isinstance(exc, OSError):
                raise
            self.write_error = self.write_error or f"closing the bag: {exc}"
        self.node.destroy_node()
