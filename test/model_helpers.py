"""Helpers shared by the paper-model tests (test_model_*.py): a synthetic model batch and the
ONNX Runtime parity check.

Not a test module (no ``test_`` prefix): imported by test_model_sosd.py, test_model_mscnn_crf.py,
test_model_pap.py and test_model_cinet.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from joint_perception.data.synthetic import SyntheticScenes
from joint_perception.data.transforms import ToTensor

BATCH_KEYS = ("image", "depth", "labels", "normals", "K", "has_labels", "has_normals")


def synthetic_batch(n: int = 2, h: int = 64, w: int = 80, seed: int = 0) -> dict[str, torch.Tensor]:
    """A model batch (models/base.py contract) of ``n`` procedural indoor scenes.

    :class:`SyntheticScenes` items through :class:`ToTensor` (ImageNet-normalised image),
    stacked: ``image`` (n,3,h,w) float32, ``depth`` (n,1,h,w) float32 metres, ``labels``
    (n,h,w) int64, ``normals`` (n,3,h,w) float32, ``K`` (n,3,3) float32, ``has_labels`` /
    ``has_normals`` (n,) bool. Deterministic for a given ``seed``.
    """
    ds, to_tensor = SyntheticScenes(n, height=h, width=w, seed=seed), ToTensor()
    items = [to_tensor(ds[i]) for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in BATCH_KEYS}


class _SelectOutputs(torch.nn.Module):
    """``net``'s output dict as a tuple of the named entries (ONNX export needs tensors)."""

    def __init__(self, net: torch.nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.net = net
        self.names = names

    def forward(self, image):
        out = self.net(image)
        return tuple(out[n] for n in self.names)


def onnx_parity_gap(
    model: torch.nn.Module,
    x: torch.Tensor,
    path: Path,
    outputs: tuple[str, ...] = ("depth", "segmentation"),
) -> float:
    """Export ``model`` (in eval mode) to ``path`` and run it in ONNX Runtime on ``x``.

    Uses the TorchScript exporter at opset 17, input ``image``, the named ``outputs``; the
    wrapper stays in eval mode (export restores the wrapper's mode onto the net).

    Returns:
        The largest absolute difference between ONNX Runtime (CPU) and PyTorch over all
        ``outputs`` (skips the test when onnxruntime is missing).
    """
    ort = pytest.importorskip("onnxruntime")
    wrapper = _SelectOutputs(model, tuple(outputs)).eval()
    torch.onnx.export(
        wrapper,
        (x,),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["image"],
        output_names=list(outputs),
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = wrapper(x)
    return max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref, strict=True))
