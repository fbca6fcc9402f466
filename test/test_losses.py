"""Losses against hand-computed values (joint_perception.models.losses)."""

from __future__ import annotations

import math

import pytest
import torch

from joint_perception.models import losses


def _d(vals):
    return torch.tensor(vals, dtype=torch.float32).view(1, 1, 1, -1)


def test_berhu_hand_values():
    pred = _d([1.0, 2.0, 3.0, 0.0])
    gt = _d([1.5, 2.0, 1.0, 0.0])  # last pixel invalid; errors 0.5, 0, 2 -> c = 0.4
    c = 0.4
    expected = ((0.5**2 + c**2) / (2 * c) + 0.0 + (2.0**2 + c**2) / (2 * c)) / 3
    assert losses.berhu_loss(pred, gt).item() == pytest.approx(expected, rel=1e-6)
    # small error below c stays L1
    assert losses.berhu_loss(_d([1.0, 1.1, 2.0]), _d([1.0, 1.0, 1.0])).item() == pytest.approx(
        (0 + 0.1 + (1 + 0.04) / 0.4) / 3, rel=1e-5
    )


def test_l1_and_mask_and_nan_gt():
    pred = _d([1.0, 2.0, 3.0])
    gt = _d([2.0, float("nan"), 1.0])
    assert losses.l1_loss(pred, gt).item() == pytest.approx(1.5)
    mask = torch.tensor([[[[True, True, False]]]])
    assert losses.l1_loss(pred, gt, mask).item() == pytest.approx(1.0)


def test_no_valid_pixels_gives_attached_zero():
    pred = _d([1.0, 2.0]).requires_grad_()
    loss = losses.berhu_loss(pred, _d([0.0, 0.0]))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None


def test_silog_hand_value_and_scale_invariance():
    pred = _d([1.0, 2.0])
    gt = _d([1.0, 1.0])
    d = [0.0, math.log(2.0)]
    expected = sum(x * x for x in d) / 2 - 0.5 * (sum(d) / 2) ** 2
    assert losses.silog_loss(pred, gt).item() == pytest.approx(expected, rel=1e-6)
    # lam = 1: a global scale error costs nothing
    assert losses.silog_loss(gt * 3.0, gt, lam=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_class_weights_and_weighted_ce():
    labels = torch.tensor([[[1, 1, 1, 2, 0, 0]]])
    w = losses.class_weights(labels, 3)
    assert torch.allclose(w, torch.tensor([1 / 4, 3 / 4, 1.0]))
    logits = torch.zeros(1, 3, 1, 6)
    # uniform logits: CE = log 3 on every non-void pixel regardless of weights
    assert losses.cross_entropy_loss(logits, labels).item() == pytest.approx(math.log(3))
    assert losses.cross_entropy_loss(logits, labels, w).item() == pytest.approx(math.log(3))
    assert losses.cross_entropy_loss(logits, labels, reduction="sum").item() == pytest.approx(
        4 * math.log(3)
    )
    with pytest.raises(ValueError, match="exceeds"):
        losses.cross_entropy_loss(logits, torch.full((1, 1, 6), 4))


def test_normal_losses():
    n = torch.zeros(1, 3, 1, 3)
    n[:, 2] = -1.0
    gt = n.clone()
    gt[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0])
    gt[0, :, 0, 2] = 0.0  # invalid
    assert losses.normal_cosine_loss(n, gt).item() == pytest.approx(0.5)  # (0 + 1) / 2
    assert losses.normal_l1_loss(n, gt).item() == pytest.approx(1.0)  # (0 + 2) / 2


def test_depth_to_normals_plane():
    # plane z = 2 + 0.01 * X tilted about y; its normal is (0.01, 0, -1) normalised, towards camera
    h, w = 12, 16
    K = torch.tensor([[20.0, 0, 8.0], [0, 20.0, 6.0], [0, 0, 1]])
    u = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w)
    # z = a + b X with X = (u - cx) z / fx  =>  z = a / (1 - b (u - cx) / fx)
    a, b = 2.0, 0.3
    z = a / (1 - b * (u - 8.0) / 20.0)
    n = losses.depth_to_normals(z.view(1, 1, h, w), K)
    expected = torch.tensor([b, 0.0, -1.0]) / math.sqrt(1 + b * b)
    assert torch.allclose(n[0, :, 3, 5], expected, atol=1e-4)
    assert torch.allclose(n.norm(dim=1), torch.ones(1, h, w), atol=1e-5)


def test_depth_gradient_normal_loss():
    z = torch.linspace(1, 2, 20).view(1, 1, 4, 5)
    assert losses.depth_gradient_normal_loss(z, z).item() == pytest.approx(0.0, abs=1e-7)
    flat = torch.ones_like(z)
    # GT gradients: dx = 1/19 per pixel, dy = 5/19; pred flat: n = (0, 0, 1)
    gx, gy = 1 / 19, 5 / 19
    expected = 1 - 1 / math.sqrt(1 + gx * gx + gy * gy)
    assert losses.depth_gradient_normal_loss(flat, z).item() == pytest.approx(expected, rel=1e-4)


def test_pap_pair_loss_hand_values():
    # PAP sec. 3.5: sum over pairs of | |p_i - p_j| - |g_i - g_j| | (distances, summed)
    gt = torch.tensor([1.0, 2.0, 4.0]).view(1, 1, 1, 3)
    pred = torch.tensor([4.0, 2.0, 1.0]).view(1, 1, 1, 3)
    pairs = torch.tensor([[[0, 1], [0, 2], [1, 2]]])
    # |pred diffs| 2, 3, 1; |gt diffs| 1, 3, 2 -> |2-1| + |3-3| + |1-2| = 2
    loss = losses.pairwise_distance_loss(pred, gt, pairs=pairs)
    assert loss.item() == pytest.approx(2.0)
    # a map with reversed ordering but the same distances costs nothing (absolute distances)
    sym = torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 1, 3)
    assert losses.pairwise_distance_loss(sym.flip(-1), sym, pairs=pairs).item() == 0.0
    # summed, not averaged: k copies of a pair cost k times one pair
    one = losses.pairwise_distance_loss(pred, gt, pairs=pairs[:, :1])
    many = losses.pairwise_distance_loss(pred, gt, pairs=pairs[:, :1].repeat(1, 300, 1))
    assert one.item() == pytest.approx(1.0) and many.item() == pytest.approx(300.0)
    # batch: mean of the per-image sums
    batch = losses.pairwise_distance_loss(
        torch.cat([pred, gt]), torch.cat([gt, gt]), pairs=pairs.repeat(2, 1, 1)
    )
    assert batch.item() == pytest.approx(1.0)
    # vectors (normals): Euclidean distances; (1,0,0),(0,1,0) vs GT (1,0,0),(1,0,0)
    n_pred = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]).view(1, 3, 1, 2)
    n_gt = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]).view(1, 3, 1, 2)
    val = losses.pairwise_distance_loss(n_pred, n_gt, pairs=torch.tensor([[[0, 1]]]))
    assert val.item() == pytest.approx(math.sqrt(2.0), rel=1e-6)


def test_pap_pair_loss_sampling():
    g = torch.rand(2, 1, 8, 8) + 1
    assert losses.pairwise_distance_loss(g, g).item() == 0.0
    # a constant offset preserves every distance; sampled pairs use valid pixels only
    assert losses.pairwise_distance_loss(g + 0.5, g).item() == pytest.approx(0.0, abs=1e-4)
    # two valid pixels (GT 1 and 3), prediction 0 everywhere: a mixed pair costs 2, an equal
    # pair 0; 300 pairs -> about 150 mixed pairs -> about 300
    pred = torch.zeros(1, 1, 1, 4)
    gt = torch.tensor([[[[1.0, 0.0, 3.0, 0.0]]]])
    gen = torch.Generator().manual_seed(0)
    loss = losses.pairwise_distance_loss(pred, gt, num_pairs=300, generator=gen)
    assert 240 <= loss.item() <= 360 and loss.item() % 2 == 0
    n = torch.randn(1, 3, 5, 5)
    mask = torch.ones(1, 5, 5, dtype=torch.bool)
    assert losses.pairwise_distance_loss(n, n, mask).item() == pytest.approx(0.0, abs=1e-5)


def test_cinet_signed_pair_loss():
    g = torch.rand(2, 1, 8, 8) + 1
    assert losses.pairwise_signed_loss(g + 0.5, g, num_pixels=50).item() == pytest.approx(
        0.0, abs=1e-6
    )
    # two valid pixels only: every sampled pair is (a,a), (b,b), (a,b) or (b,a)
    pred = torch.zeros(1, 1, 1, 4)
    gt = torch.tensor([[[[1.0, 0.0, 3.0, 0.0]]]])
    gen = torch.Generator().manual_seed(0)
    loss = losses.pairwise_signed_loss(pred, gt, num_pixels=200, generator=gen)
    # dense signed pairs: mean |g_i - g_j| over i,j in {1,3} with ~equal counts = ~1
    assert loss.item() == pytest.approx(1.0, abs=0.15)


def test_ideal_affinity_and_attention_bce():
    labels = torch.tensor([[[1, 2], [1, 0]]])
    onehot = torch.nn.functional.one_hot(labels, 3)[..., 1:].permute(0, 3, 1, 2).float()
    A = losses.ideal_affinity(onehot)
    expected = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]).float()
    assert torch.equal(A[0], expected)
    att = torch.where(expected > 0, 0.9, 0.1)[None]
    loss = losses.attention_bce_loss(att, labels, (2, 2))
    assert loss.item() == pytest.approx(-math.log(0.9), rel=1e-5)
    logits = torch.log(att / (1 - att))
    assert losses.attention_bce_loss(
        logits, labels, (2, 2), from_logits=True
    ).item() == pytest.approx(-math.log(0.9), rel=1e-5)


def test_cinet_consistency_loss_eq7_hand_values():
    # CI-Net Eq. 7: psi (GT labels differ) * exp(-|f_i - f_j|^2 / (2 sigma^2)) over the pairs at
    # offsets l along x and y, divided by the number of non-void pairs, summed over feature maps
    f = torch.tensor([[0.0, 1.0, 3.0], [0.0, 0.0, 0.0]]).view(1, 2, 1, 3)  # C = 2, 1 x 3
    labels = torch.tensor([[[1, 1, 2]]])
    # l = 1: (0,1) same label -> psi 0; (1,2) differ, |df|^2 = 4. l = 2: (0,2) differ, |df|^2 = 9
    expected = (math.exp(-4 / 2) + math.exp(-9 / 2)) / 3
    val = losses.consistency_loss([f], labels, offsets=(1, 2))
    assert val.item() == pytest.approx(expected, rel=1e-6)
    # sigma = 2: exponent divided by 4
    ls = torch.tensor(math.log(2.0), requires_grad=True)
    val = losses.consistency_loss([f], labels, offsets=(1, 2), log_sigma=ls)
    assert val.item() == pytest.approx((math.exp(-4 / 8) + math.exp(-9 / 8)) / 3, rel=1e-6)
    val.backward()
    assert ls.grad is not None and ls.grad.item() > 0  # the loss only falls as sigma shrinks
    # the y axis: a 3 x 1 map gives the same pairs
    fy = f.transpose(2, 3)
    val_y = losses.consistency_loss([fy], labels.transpose(1, 2), offsets=(1, 2))
    assert val_y.item() == pytest.approx(expected, rel=1e-6)
    # void pixels take no part; two feature maps add up (depth + semantic features)
    void = torch.tensor([[[0, 1, 2]]])  # only (1,2) is a non-void pair
    assert losses.consistency_loss([f], void, offsets=(1, 2)).item() == pytest.approx(
        math.exp(-2.0), rel=1e-6
    )
    two = losses.consistency_loss([f, f], labels, offsets=(1, 2))
    assert two.item() == pytest.approx(2 * expected, rel=1e-6)
    # identical labels everywhere: nothing to push apart
    same = losses.consistency_loss([f], torch.ones(1, 1, 3, dtype=torch.long))
    assert same.item() == 0.0
    with pytest.raises(ValueError, match="positive"):
        losses.consistency_loss([f], labels, offsets=(0,))


def test_weighting():
    uw = losses.UncertaintyWeighting(2)
    a, b = torch.tensor(2.0), torch.tensor(3.0)
    assert uw([a, b]).item() == pytest.approx(5.0)
    with torch.no_grad():
        uw.log_vars[:] = torch.tensor([math.log(2.0), 0.0])
    assert uw([a, b]).item() == pytest.approx(1.0 + math.log(2.0) + 3.0)
    assert losses.fixed_weighting({"d": a, "s": b}, {"s": 0.5}).item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="unknown"):
        losses.fixed_weighting({"d": a}, {"x": 1.0})
