"""SOSD-Net: shapes, gradients, semantic-to-depth positivity, EM alternation, training, ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_helpers import onnx_parity_gap, synthetic_batch

from joint_perception.models import build_model
from joint_perception.models.sosd import SemanticToDepth

H, W = 64, 80


def small(**kw):
    torch.manual_seed(0)
    return build_model("sosd", backbone="resnet18", **kw)


def test_forward_shapes_and_config_roundtrip():
    m = small(tasks=("depth", "segmentation", "normals"))
    out = m(torch.randn(2, 3, H, W))
    assert out["depth"].shape == (2, 1, H, W) and out["segmentation"].shape == (2, 40, H, W)
    assert out["normals"].shape == (2, 3, H, W)
    assert torch.all(out["depth"] > 0)
    np.testing.assert_allclose(out["normals"].norm(dim=1).detach().numpy(), 1.0, atol=1e-5)
    again = build_model("sosd", **m.config())
    assert again.config() == m.config()
    assert again.state_dict().keys() == m.state_dict().keys()
    with pytest.raises(ValueError, match="backbone"):
        build_model("sosd", backbone="vgg16")
    with pytest.raises(ValueError, match="depth_output"):
        small(depth_output="log")
    with pytest.raises(ValueError, match="tasks"):
        small(tasks=("depth",))


def test_semantic_to_depth_is_positive_and_follows_the_area_relation():
    torch.manual_seed(1)
    mod = SemanticToDepth(sem_ch=8, common_ch=8, depth_ch=4).eval()
    sem, common = -50 * torch.rand(1, 8, 6, 7), 50 * torch.randn(1, 8, 6, 7)
    g = mod.geometric_cue(sem, common)
    assert torch.all(g > 0)
    a3, a2 = F.softplus(mod.area3d(common)), F.softplus(mod.inv_area2d(sem))
    torch.testing.assert_close(g, torch.sqrt(a3 * a2 + mod.eps))
    z, g2 = mod(sem, torch.randn(1, 4, 6, 7), common)
    assert z.shape == (1, 1, 6, 7) and torch.equal(g, g2)


def test_every_parameter_gets_a_gradient():
    m = small(tasks=("depth", "segmentation", "normals"))
    batch = synthetic_batch()
    m.compute_losses(m(batch["image"]), batch)["total"].backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def _step_names(m, group):
    ids = {id(p) for p in group}
    return {n for n, p in m.named_parameters() if id(p) in ids}


def test_em_alternation_moves_only_its_side_and_the_shared_encoder():
    m = small()
    depth_group, sem_group = m.em_groups()
    dnames, snames = _step_names(m, depth_group), _step_names(m, sem_group)
    shared = dnames & snames
    assert dnames | snames == {n for n, _ in m.named_parameters()}
    assert {n for n in shared if n.startswith("backbone.")} == {
        n for n, _ in m.named_parameters() if n.startswith("backbone.")
    }
    assert any(n.startswith("s2d.") for n in dnames - snames)
    assert any(n.startswith("d2s.") for n in snames - dnames)
    batch = synthetic_batch()
    opt = {
        k: torch.optim.Adam(g, lr=1e-3) for k, g in zip(("depth", "sem"), (depth_group, sem_group))
    }
    for step, names in (("depth", dnames), ("sem", snames)):
        # the trainer's EM step: freeze the other side, backprop this step's loss, update
        for n, p in m.named_parameters():
            p.requires_grad_(n in names)
        before = {n: p.detach().clone() for n, p in m.named_parameters()}
        losses = m.compute_losses(m(batch["image"]), batch)
        loss = m.em_step_losses(losses)[0 if step == "depth" else 1]
        opt[step].zero_grad(set_to_none=True)
        loss.backward()
        with_grad = {n for n, p in m.named_parameters() if p.grad is not None}
        assert with_grad == names
        opt[step].step()
        moved = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
        assert moved <= names and "backbone.conv1.weight" in moved
        # the other side's own parameters did not move
        assert not moved & (snames - dnames if step == "depth" else dnames - snames)
        for p in m.parameters():
            p.grad = None


def test_inverse_depth_output_and_loss():
    m = small(depth_output="inverse").eval()
    out = m(torch.randn(1, 3, H, W))
    torch.testing.assert_close(out["depth"], 1.0 / out["aux_inv_depth"].clamp_min(1e-3))
    gt = torch.full((1, 1, H, W), 2.0)
    gt[..., :10] = 0  # invalid
    fake = {
        "depth": torch.full((1, 1, H, W), 4.0),
        "aux_inv_depth": torch.full((1, 1, H, W), 0.25),
        "segmentation": torch.zeros(1, 40, H, W),
    }
    losses = m.compute_losses(fake, {"depth": gt, "labels": torch.ones(1, H, W, dtype=torch.long)})
    assert losses["depth"].item() == pytest.approx(0.25)  # |1/4 - 1/2|
    assert losses["segmentation"].item() == pytest.approx(np.log(40), rel=1e-5)


def test_few_training_steps_lower_the_loss():
    m = small()
    batch = synthetic_batch(h=48, w=64, seed=3)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(5):
        total = m.compute_losses(m(batch["image"]), batch)["total"]
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_onnx_export_matches_torch(tmp_path):
    m = small().eval()
    x = torch.randn(1, 3, H, W)
    assert onnx_parity_gap(m, x, tmp_path / "sosd.onnx", ("depth", "segmentation")) < 1e-4


@pytest.mark.slow
def test_paper_configuration_forward_480x640():
    m = build_model("sosd").eval()  # Xception-65, output stride 16
    with torch.no_grad():
        out = m(torch.randn(1, 3, 480, 640))
    assert out["depth"].shape == (1, 1, 480, 640) and out["segmentation"].shape == (1, 40, 480, 640)
    assert out["aux_geometric"].shape == (1, 1, 120, 160)
