"""``replay``: play a rosbag2 through the running perception node over real ROS, measure it the
way ros2_benchmark does, evaluate the outputs and report.

    replay --bag ../shared/data/bags/nyuv2_test10_mcap --out out/replay [--rate 10]
           [--frames 100] [--peak [--max-missed 0.05]] [--labels-dir ../shared/data/nyuv2_test |
           --labels-topic TOPIC]
           [--params config/perception.yaml] [--set backend:=onnxruntime] [--compressed]

One idea per module (a module imports only those above it in this list):

* :mod:`~.cdr` — the Header (stamp, frame_id) at the start of a raw CDR message.
* :mod:`~.topics` — the topics used: bag inputs (:class:`ReplayTopics`), the node's outputs
  (:data:`OUTPUT_TOPICS`), ``/diagnostics``, the namespace.
* :mod:`~.options` — :class:`ReplayOptions`, the settings of one run.
* :mod:`~.bag_input` — :func:`load_input_frames`: the bag's images with their CameraInfo, as
  raw CDR, published unchanged (looped passes re-stamped).
* :mod:`~.node_process` — :class:`NodeProcess`: ``perception_node`` as a child process in a
  private namespace on loopback-only DDS, inputs remapped to the bag's topics, SIGINT to stop.
* :mod:`~.recorder` — :class:`Recorder`: an rclpy node that publishes the inputs, subscribes
  to every output (reliable) and ``/diagnostics``, notes each arrival time per header stamp
  and writes the output rosbag2 (MCAP) from a writer thread.
* :mod:`~.pacing` — :func:`publish_frames`: the recorded rate or ``--rate`` Hz against
  absolute deadlines.
* :mod:`~.session` — :class:`ReplaySession`: node + recorder matched; each
  :meth:`~ReplaySession.run` sends one schedule, drains its outputs and samples the node's CPU
  time and memory from ``/proc``
  (:class:`joint_perception.evaluation.rates.ProcessMonitor`).
* :mod:`~.summary` — :func:`summarise`: frames in/out/dropped, end-to-end latency (send wall
  time -> receive wall time, paired by header stamp), the ros2_benchmark fields
  (:func:`joint_perception.evaluation.rates.performance_fields`), per-stage times (from the
  node's diagnostics), device/backend/model/resolutions.
* :mod:`~.markdown` — :func:`summary_markdown`, :func:`write_summary` (``summary.json``,
  ``summary.md``, atomically).
* :mod:`~.scoring` — depth (overall and by distance), segmentation (``--labels-topic`` or
  ``--labels-dir``) and normal metrics of the output bag
  (:mod:`joint_perception.accuracy`, :mod:`joint_perception.evaluation.references`), and the report samples.
* :mod:`~.peak` — ``--peak``: bounded trials at galloping/bisected rates
  (:func:`joint_perception.evaluation.rates.find_peak_rate`) on one session.
* :mod:`~.run_report` — ``report.html`` + ``report.md``
  (:mod:`joint_perception.evaluation.report`).
* :mod:`~.run` — :func:`replay`: the whole run; the bag goes to ``DIR/output/``, with the
  bag's SHA-256 in the summary.
* :mod:`~.cli` — :func:`main`, the console script.
"""

from joint_perception.evaluation.replay.bag_input import InputFrame, load_input_frames
from joint_perception.evaluation.replay.cdr import header_from_cdr
from joint_perception.evaluation.replay.cli import main
from joint_perception.evaluation.replay.markdown import summary_markdown, write_summary
from joint_perception.evaluation.replay.node_process import NodeProcess
from joint_perception.evaluation.replay.options import ReplayOptions
from joint_perception.evaluation.replay.pacing import publish_frames, send_due_times
from joint_perception.evaluation.replay.recorder import Recorder, get_message
from joint_perception.evaluation.replay.run import replay
from joint_perception.evaluation.replay.session import ReplaySession
from joint_perception.evaluation.replay.summary import summarise
from joint_perception.evaluation.replay.topics import (
    DEFAULT_NAMESPACE,
    DIAGNOSTICS_TOPIC,
    OUTPUT_TOPICS,
    ReplayTopics,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "DIAGNOSTICS_TOPIC",
    "OUTPUT_TOPICS",
    "InputFrame",
    "NodeProcess",
    "Recorder",
    "ReplayOptions",
    "ReplaySession",
    "ReplayTopics",
    "get_message",
    "header_from_cdr",
    "load_input_frames",
    "main",
    "publish_frames",
    "replay",
    "send_due_times",
    "summarise",
    "summary_markdown",
    "write_summary",
]
