"""The tasks a joint network solves and the outputs it gives: the one table every layer reads.

Vocabulary (used for every dict key, log key, loss key and metadata field):

* a **task** is ``depth``, ``segmentation`` or ``normals``: a network's ``tasks``, the keys of
  its ``forward`` output (``segmentation`` = the class logits), of its losses and of
  ``loss_weights``;
* a task's **target** is the sample / batch key of its ground truth: ``depth`` (metres),
  ``labels`` (class ids, 0 = void), ``normals`` (unit vectors);
* a network **output** is what the exported graph returns and every backend produces: ``depth``,
  ``labels``, ``confidence``, ``normals`` — the ONNX output names, the fields of
  :class:`joint_perception.runtime.base.Prediction` and of the per-frame result. Each output
  belongs to one task (``labels`` and ``confidence`` to ``segmentation``).

Adding an output (say a per-pixel depth uncertainty) is one :class:`NetworkOutput` entry here
plus its computation in :class:`joint_perception.models.deploy.DeployWrapper` and its
post-processing in :mod:`joint_perception.runtime.processing`; the ROS topic that carries it is
one entry of :mod:`joint_perception.ros.topics`. docs/architecture.md shows a worked example.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "Task",
    "NetworkOutput",
    "TASKS",
    "OUTPUTS",
    "TASK_NAMES",
    "OUTPUT_NAMES",
    "outputs_of",
    "check_tasks",
]


@dataclass(frozen=True)
class Task:
    """One task of a joint network.

    Attributes:
        name: the task name (also the key of the network's raw output and of its loss).
        target: sample / batch key of the ground truth.
        outputs: names of the network outputs of this task, in graph order.
        description: one line for docs and errors.
    """

    name: str
    target: str
    outputs: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class NetworkOutput:
    """One output of an exported network (ONNX graph, every backend's ``Prediction``).

    Attributes:
        name: ONNX output name = ``Prediction`` field = per-frame result field.
        task: the task it belongs to.
        graph_layout: shape in the ONNX graph, e.g. ``(N, 1, H, W)``.
        runtime_layout: shape in ``Prediction`` (channels last for vectors, no singleton
            channel): ``"NHW"`` or ``"NHWC"``.
        dtype: numpy dtype name in the graph and in ``Prediction``.
        description: unit, frame and range.
    """

    name: str
    task: str
    graph_layout: str
    runtime_layout: str
    dtype: str
    description: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("depth", "depth", ("depth",), "metric depth along the optical axis"),
        Task("segmentation", "labels", ("labels", "confidence"), "per-pixel semantic classes"),
        Task("normals", "normals", ("normals",), "surface normals in the camera optical frame"),
    )
}

OUTPUTS: dict[str, NetworkOutput] = {
    o.name: o
    for o in (
        NetworkOutput(
            "depth",
            "depth",
            "(N, 1, H, W)",
            "NHW",
            "float32",
            "metres along z of the camera optical frame (REP 103, REP 118)",
        ),
        NetworkOutput(
            "labels",
            "segmentation",
            "(N, H, W)",
            "NHW",
            "int32",
            "class ids 1..C (0 = void, never predicted)",
        ),
        NetworkOutput(
            "confidence",
            "segmentation",
            "(N, H, W)",
            "NHW",
            "float32",
            "maximum softmax probability of the predicted class, in [0, 1]",
        ),
        NetworkOutput(
            "normals",
            "normals",
            "(N, 3, H, W)",
            "NHWC",
            "float32",
            "unit vectors in the camera optical frame (x right, y down, z forward)",
        ),
    )
}

#: task names in canonical order
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
#: network output names in graph order
OUTPUT_NAMES: tuple[str, ...] = tuple(o for t in TASKS.values() for o in t.outputs)


def check_tasks(tasks: Iterable[str]) -> tuple[str, ...]:
    """The given task names in canonical order.

    Raises:
        ValueError: an unknown or repeated name, or none at all.
    """
    tasks = list(tasks)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; tasks must be a subset of {TASK_NAMES}")
    if not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must be a non-empty set of {TASK_NAMES}, got {tasks}")
    return tuple(t for t in TASK_NAMES if t in tasks)


def outputs_of(tasks: Iterable[str]) -> tuple[str, ...]:
    """Network output names of ``tasks``, in graph order.

    Raises:
        ValueError: unknown task names.
    """
    return tuple(o for t in check_tasks(tasks) for o in TASKS[t].outputs)
