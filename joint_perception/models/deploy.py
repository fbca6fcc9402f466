"""The deployed graph of a joint network: what ONNX export, the torch backend and checkpoint
evaluation all run (docs/architecture.md, "ONNX model contract").

:class:`DeployWrapper` takes RGB in [0, 1] (normalisation inside) and returns the network
outputs of :data:`joint_perception.tasks.OUTPUTS` for the model's tasks, in graph order:

* ``depth`` (N, 1, H, W) float32 metres — the network's ``depth`` output as is;
* ``labels`` (N, H, W) int32 — ``argmax + 1`` of the ``segmentation`` logits (0 is void and
  never predicted);
* ``confidence`` (N, H, W) float32 — the maximum softmax probability, computed as
  ``1 / sum_c exp(l_c - max_c l_c)`` without materialising the softmax;
* ``normals`` (N, 3, H, W) float32 unit vectors (camera optical frame, REP 103).

Adding a network output = its :mod:`joint_perception.tasks` entry + one function in
:data:`_GRAPH_OUTPUTS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from joint_perception.models.base import JointModel
from joint_perception.tasks import outputs_of

__all__ = ["DeployWrapper"]


def _labels(raw: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return (raw["segmentation"].argmax(dim=1) + 1).to(torch.int32)


def _confidence(raw: Mapping[str, torch.Tensor]) -> torch.Tensor:
    logits = raw["segmentation"]
    top = logits.max(dim=1, keepdim=True).values
    return torch.reciprocal(torch.exp(logits - top).sum(dim=1))


#: network output name -> its computation from the model's raw ``forward`` dict
_GRAPH_OUTPUTS: dict[str, Callable[[Mapping[str, torch.Tensor]], torch.Tensor]] = {
    "depth": lambda raw: raw["depth"],
    "labels": _labels,
    "confidence": _confidence,
    "normals": lambda raw: raw["normals"],
}


class DeployWrapper(nn.Module):
    """Wrap a joint network into the exported graph contract (see module docstring).

    Args:
        model: a :class:`JointModel` (its ``forward`` takes normalised RGB).
        mean, std: per-channel RGB normalisation; default the model's ``mean``/``std``.

        outputs: compute only these of the model's outputs (None = all; the torch backend's
            ``outputs=``, the subset a node publishes); ONNX export uses all.

    Attributes:
        output_names: ONNX output names in the order ``forward`` returns them.

    ``forward(image)``: image (N, 3, H, W) float32 RGB in [0, 1] -> tuple of tensors named by
    ``output_names``. The confidence is ``1 / sum_c exp(l_c - max_c l_c)``, which equals the
    maximum softmax probability without materialising the softmax.
    """

    def __init__(
        self,
        model: JointModel,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        outputs: Sequence[str] | None = None,
    ):
        super().__init__()
        self.model = model
        mean = model.mean if mean is None else mean
        std = model.std if std is None else std
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean/std must be 3 values with std > 0, got {mean}, {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        names = list(outputs_of(model.tasks))
        self.output_names = names if outputs is None else [n for n in names if n in outputs]
        if not self.output_names:
            raise ValueError(f"none of the outputs {list(outputs)} is one of the model's {names}")

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.model((image - self.mean) / self.std)
        return tuple(_GRAPH_OUTPUTS[name](raw) for name in self.output_names)
