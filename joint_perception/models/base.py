"""Base class and contract for every joint network (real-time default and paper models).

Training contract (see docs/architecture.md):

* ``forward(x)``: ``x`` (N, 3, H, W) float32, RGB normalised with the model's mean/std.
  Returns a dict with, for each task the model has,
  ``"depth"`` (N, 1, H, W) metres (> 0), ``"segmentation"`` (N, C, H, W) logits for classes 1..C,
  ``"normals"`` (N, 3, H, W) unit vectors (camera optical frame), all at the input
  resolution, plus optional auxiliary tensors (prefixed ``aux_``) that losses need.
* ``compute_losses(outputs, batch)`` returns a dict of scalar tensors with key ``"total"``.
  ``batch`` keys: ``image`` (N,3,H,W) normalised; ``depth`` (N,1,H,W) metres, 0 = invalid;
  ``labels`` (N,H,W) int64, 0 = void, 1..C; ``normals`` (N,3,H,W), all-zero = invalid;
  ``K`` (N,3,3) float32 intrinsics at the batch resolution; ``has_labels``/``has_normals``
  (N,) bool masks for samples that lack those targets.
* Optional training schemes: ``set_stage(k)`` for staged training, ``em_groups()`` for
  EM-style alternation (SOSD-Net), ``param_groups(lr)`` for per-module learning rates.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from joint_perception.tasks import check_tasks

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class JointModel(nn.Module):
    """A multi-task network with the contract above.

    Subclasses set ``arch`` (registry name) and ``tasks`` and implement ``forward`` and
    ``compute_losses``.

    Attributes:
        arch: registry name.
        tasks: subset of :data:`joint_perception.tasks.TASK_NAMES`, in that order.
        num_classes: C, classes 1..C (void excluded).
        max_depth: metres, upper end of the depth the model predicts.
        mean, std: RGB normalisation expected at ``forward``.
    """

    arch: str = "abstract"

    def __init__(
        self,
        tasks: Iterable[str] = ("depth", "segmentation", "normals"),
        num_classes: int = 40,
        max_depth: float = 10.0,
    ):
        super().__init__()
        self.tasks = check_tasks(tasks)
        self.num_classes = int(num_classes)
        self.max_depth = float(max_depth)
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.stage = 0

    def calibrate(self, images: list[torch.Tensor]) -> int:
        """Data-dependent initialisation before the first training step (default: none).

        Networks whose pretrained weights need statistics of the training data (e.g. a
        MobileNetV2 imported from TFLite, whose batch norms were folded away:
        :func:`joint_perception.models.backbones.calibrate_folded_batchnorm`) override this.

        Args:
            images: a few normalised training batches (N, 3, H, W).

        Returns:
            The number of layers changed.
        """
        return 0

    def compute_losses(
        self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def set_stage(self, stage: int) -> None:
        """Select a training stage (paper-specific; 0 = the default, all losses).

        Raises:
            ValueError: for a staged model (``num_stages`` > 1), ``stage`` outside
                0..num_stages. A model without staging accepts any stage (it has one).
        """
        stage = int(stage)
        n = self.num_stages
        if n > 1 and not 0 <= stage <= n:
            raise ValueError(f"{self.arch} has stages 1..{n} (0 = all losses), got {stage}")
        self.stage = stage

    @property
    def num_stages(self) -> int:
        """How many training stages the paper's scheme has (1 = no staging)."""
        return 1

    def em_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]] | None:
        """(depth-side, semantic-side) parameters for EM alternation, or None."""
        return None

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser parameter groups; default: one group at ``lr``."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def config(self) -> dict:
        """Constructor arguments that rebuild this model with ``build_model(arch, **config)``."""
        return {
            "tasks": list(self.tasks),
            "num_classes": self.num_classes,
            "max_depth": self.max_depth,
        }
