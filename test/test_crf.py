"""Dense CRF: windowed ConvCRF vs the exact fully connected reference, energy, export."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from joint_perception.models.crf import (
    ConvCRF,
    crf_energy,
    dense_kernels,
    exact_dense_crf_meanfield,
    pairwise_features,
    potts_compatibility,
)


def two_region_scene(h=16, w=16, seed=0):
    """Left half red at 2 m, right half blue at 4 m; noisy unary (about 25 % wrong)."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.zeros(1, h, w, dtype=torch.long)
    gt[:, :, w // 2 :] = 1
    rgb = torch.zeros(1, 3, h, w)
    rgb[:, 0, :, : w // 2] = 200.0
    rgb[:, 2, :, w // 2 :] = 200.0
    rgb = rgb + 2.0 * torch.randn(rgb.shape, generator=g)
    depth = torch.full((1, 1, h, w), 2.0)
    depth[..., w // 2 :] = 4.0
    logits = F.one_hot(gt, 2).permute(0, 3, 1, 2).float() + torch.randn(1, 2, h, w, generator=g)
    return gt, rgb, depth, logits


def test_features_and_kernel_values_by_hand():
    rgb = torch.zeros(1, 3, 1, 2)
    rgb[0, 0, 0, 1] = 6.0  # second pixel: R differs by 6
    depth = torch.tensor([[[[1.0, 1.4]]]])
    theta = (10.0, 3.0, 4.0, 0.2, 2.0)
    feats = pairwise_features(rgb, depth, theta, pixel_spacing=8.0)
    assert [f.shape[1] for f in feats] == [5, 3, 2]
    k = dense_kernels(rgb, depth, theta, pixel_spacing=8.0)[0, :, 0, 1]
    # pixels 8 input pixels apart: |p|^2 = 64.
    expect = [
        math.exp(-64 / 200 - 36 / 18),
        math.exp(-64 / 32 - 0.16 / 0.08),
        math.exp(-64 / 8),
    ]
    np.testing.assert_allclose(k.numpy(), expect, rtol=1e-5)
    assert torch.all(dense_kernels(rgb, depth, theta)[0, :, 0, 0] == 0)  # no self-pairs


def test_convcrf_full_window_matches_exact_dense_crf():
    torch.manual_seed(0)
    h = w = 12
    c = 3
    logits = torch.randn(2, c, h, w, dtype=torch.float64)
    rgb = torch.rand(2, 3, h, w, dtype=torch.float64) * 255
    depth = torch.rand(2, 1, h, w, dtype=torch.float64) * 5
    theta = (6.0, 40.0, 5.0, 1.0, 2.0)
    crf = ConvCRF(c, window=2 * h - 1, iterations=5, theta=theta).double()
    with torch.no_grad():
        crf.compat.add_(0.3 * torch.randn(3, c, c, dtype=torch.float64))  # not only Potts
    ours = crf(logits, rgb, depth)
    ref = exact_dense_crf_meanfield(logits, rgb, depth, crf.compat, theta, iterations=5)
    assert (ours - ref).abs().max().item() < 1e-9
    # a truncated window is a different (local) CRF: it must differ from the dense one
    small = ConvCRF(c, window=3, iterations=5, theta=theta).double()
    small.compat.data.copy_(crf.compat.data)
    assert (small(logits, rgb, depth) - ref).abs().max().item() > 1e-3


def test_meanfield_lowers_energy_and_fixes_noisy_labels():
    gt, rgb, depth, logits = two_region_scene()
    unary = -torch.log_softmax(logits, dim=1)
    crf = ConvCRF(2, window=9, iterations=5)  # paper theta and weights (7, 4, 3)
    out = crf(logits, rgb, depth)
    before, after = logits.argmax(1), out.argmax(1)
    kw = dict(window=9, normalization="symmetric")  # the energy this CRF minimises
    e_before = crf_energy(before, unary, rgb, depth, crf.compat, crf.theta, **kw)
    e_after = crf_energy(after, unary, rgb, depth, crf.compat, crf.theta, **kw)
    assert e_after.item() < 0.5 * e_before.item()
    err_before = (before != gt).float().mean().item()
    err_after = (after != gt).float().mean().item()
    assert err_before > 0.15 and err_after < 0.02
    # expected energy of the marginals also drops from Q_0 to Q_T
    q0, qt = torch.softmax(logits, 1), torch.softmax(out, 1)
    eq0 = crf_energy(q0, unary, rgb, depth, crf.compat, crf.theta, **kw)
    eqt = crf_energy(qt, unary, rgb, depth, crf.compat, crf.theta, **kw)
    assert eqt.item() < eq0.item()


def test_symmetric_normalisation_by_hand():
    # 1x2 image, smoothness kernel k = exp(-1 / (2 * 2^2)); Z = 1 + k at both pixels
    rgb, depth = torch.zeros(1, 3, 1, 2), torch.ones(1, 1, 1, 2)
    theta = (160.0, 3.0, 50.0, 0.2, 2.0)
    k = math.exp(-1 / 8)
    raw = dense_kernels(rgb, depth, theta)[0, 2, 0, 1].item()
    norm = dense_kernels(rgb, depth, theta, normalization="symmetric")[0, 2, 0, 1].item()
    assert raw == pytest.approx(k) and norm == pytest.approx(k / (1 + k))
    crf = ConvCRF(2, window=3, theta=theta)
    got = crf.kernels(rgb, depth)[0, 2]  # (9, 1, 2): the right neighbour of pixel 0 is o = 5
    assert got[5, 0, 0].item() == pytest.approx(k / (1 + k)) and got.sum().item() == pytest.approx(
        2 * k / (1 + k)
    )
    raw_crf = ConvCRF(2, window=3, theta=theta, normalization="none")
    assert raw_crf.kernels(rgb, depth)[0, 2, 5, 0, 0].item() == pytest.approx(k)
    with pytest.raises(ValueError, match="normalization"):
        ConvCRF(2, normalization="row")


def _grid_scene(seed: int, noise: float):
    """A synthetic indoor scene on the /8 grid of a 240x320 input (30 x 40 cells) with a noisy
    40-class unary correlated with the ground truth (an early network's scores)."""
    from joint_perception.data.synthetic import SyntheticScenes

    s = SyntheticScenes(1, height=240, width=320, seed=seed)[0]
    grid = (30, 40)
    lab = torch.from_numpy(np.asarray(s["labels"])).long()[None, None].float()
    lab = F.interpolate(lab, size=grid, mode="nearest")[:, 0].long()
    rgb = torch.from_numpy(np.asarray(s["rgb"])).permute(2, 0, 1)[None].float()
    rgb = F.interpolate(rgb, size=grid, mode="bilinear", align_corners=False)
    depth = torch.from_numpy(np.asarray(s["depth"]))[None, None].float()
    depth = F.interpolate(depth, size=grid, mode="bilinear", align_corners=False)
    target = lab - 1  # void -> -1 (ignored)
    onehot = F.one_hot(target.clamp(min=0), 40).permute(0, 3, 1, 2).float()
    g = torch.Generator().manual_seed(seed)
    logits = 1.5 * onehot + noise * torch.randn(1, 40, *grid, generator=g)
    return logits, rgb, depth, target


def _ce_acc(logits, target):
    ok = target >= 0
    ce = F.cross_entropy(logits, target, ignore_index=-1).item()
    return ce, (logits.argmax(1) == target)[ok].float().mean().item()


@pytest.mark.parametrize("noise", [1.0, 2.0])
def test_crf_at_the_papers_initial_weights_improves_segmentation(noise):
    """Paper bandwidths and Potts weights (7, 4, 3), 11x11 window on the /8 grid of a 240x320
    input: with normalised kernels switching the CRF on lowers the cross-entropy and raises the
    pixel accuracy of a noisy unary; with raw kernel sums it makes the scores overconfident."""
    res = {"off": [], "symmetric": [], "none": []}
    for seed in range(3):
        logits, rgb, depth, target = _grid_scene(seed, noise)
        res["off"].append(_ce_acc(logits, target))
        for norm in ("symmetric", "none"):
            crf = ConvCRF(40, window=11, iterations=5, normalization=norm)
            with torch.no_grad():
                out = crf(logits, rgb, depth, pixel_spacing=8.0)
            res[norm].append(_ce_acc(out, target))
    mean = {k: np.mean(v, axis=0) for k, v in res.items()}
    assert mean["symmetric"][0] < mean["off"][0]  # cross-entropy falls
    assert mean["symmetric"][1] > mean["off"][1]  # pixel accuracy rises
    assert mean["none"][0] > 3 * mean["off"][0]  # unnormalised: far overconfident


def test_energy_of_labels_by_hand():
    # 1x2 image, 2 classes, only the smoothness kernel weighted: k3 = exp(-1 / (2 * 2^2)).
    rgb = torch.zeros(1, 3, 1, 2)
    depth = torch.ones(1, 1, 1, 2)
    unary = torch.tensor([[[[0.0, 1.0]], [[2.0, 0.5]]]])
    compat = potts_compatibility(2, (0.0, 0.0, 5.0))
    theta = (160.0, 3.0, 50.0, 0.2, 2.0)
    e_diff = crf_energy(torch.tensor([[[0, 1]]]), unary, rgb, depth, compat, theta)
    e_same = crf_energy(torch.tensor([[[0, 0]]]), unary, rgb, depth, compat, theta)
    np.testing.assert_allclose(e_diff.item(), 0.0 + 0.5 + 5 * math.exp(-1 / 8), rtol=1e-6)
    np.testing.assert_allclose(e_same.item(), 0.0 + 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="labels must lie"):
        crf_energy(torch.tensor([[[0, 2]]]), unary, rgb, depth, compat, theta)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="odd"):
        ConvCRF(3, window=4)
    with pytest.raises(ValueError, match="theta"):
        ConvCRF(3, theta=(1, 2, 3))
    crf = ConvCRF(3, window=3)
    with pytest.raises(ValueError, match="depth must be"):
        crf(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 5))


def test_gradients_reach_compatibility_and_logits():
    gt, rgb, depth, logits = two_region_scene(8, 8)
    logits = logits.clone().requires_grad_(True)
    crf = ConvCRF(2, window=5, iterations=3)
    loss = F.cross_entropy(crf(logits, rgb, depth), gt)
    loss.backward()
    assert crf.compat.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0


def test_convcrf_onnx_export_matches_torch(tmp_path):
    gt, rgb, depth, logits = two_region_scene(12, 16)
    crf = ConvCRF(2, window=5, iterations=3).eval()

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.crf = crf

        def forward(self, lg, im, d):
            return self.crf(lg, im, d, pixel_spacing=8.0)

    path = tmp_path / "crf.onnx"
    torch.onnx.export(
        Wrap(),
        (logits, rgb, depth),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["logits", "rgb", "depth"],
        output_names=["out"],
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"logits": logits.numpy(), "rgb": rgb.numpy(), "depth": depth.numpy()})[0]
    with torch.no_grad():
        want = Wrap()(logits, rgb, depth).numpy()
    assert np.abs(got - want).max() < 1e-4
