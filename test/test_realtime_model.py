"""The default real-time model: output contract, gradients, losses, configuration."""

import pytest
import torch

from joint_perception.models import build_model
from joint_perception.models.realtime import RealtimeJointNet


def make_batch(n, h, w, num_classes=40):
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(n, 1, h, w, generator=g) * 5 + 0.5
    depth[:, :, : h // 4] = 0  # invalid top rows
    normals = torch.nn.functional.normalize(torch.randn(n, 3, h, w, generator=g), dim=1)
    return {
        "image": torch.randn(n, 3, h, w, generator=g),
        "depth": depth,
        "labels": torch.randint(0, num_classes + 1, (n, h, w), generator=g),
        "normals": normals,
        "has_labels": torch.ones(n, dtype=torch.bool),
        "has_normals": torch.ones(n, dtype=torch.bool),
    }


def test_forward_contract_at_default_size():
    torch.manual_seed(0)
    model = build_model("realtime").eval()
    assert isinstance(model, RealtimeJointNet) and model.arch == "realtime"
    n_params = sum(p.numel() for p in model.parameters())
    assert 1.5e6 < n_params < 4e6
    with torch.no_grad():
        out = model(torch.randn(1, 3, 240, 320))
    assert out["depth"].shape == (1, 1, 240, 320)
    assert out["segmentation"].shape == (1, 40, 240, 320)
    assert out["normals"].shape == (1, 3, 240, 320)
    assert out["depth"].min() > 0 and out["depth"].max() < 10.0
    assert torch.allclose(out["normals"].norm(dim=1), torch.ones(1, 240, 320), atol=1e-5)


@pytest.mark.parametrize("weighting", ["fixed", "uncertainty"])
def test_every_parameter_gets_a_gradient(weighting):
    torch.manual_seed(0)
    model = build_model("realtime", loss_weighting=weighting).train()
    batch = make_batch(1, 240, 320)
    losses = model.compute_losses(model(batch["image"]), batch)
    assert set(losses) == {"total", "depth", "segmentation", "normals"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["total"].backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []
    if weighting == "uncertainty":  # log_vars start at 0: total = sum of the terms
        terms = losses["depth"] + losses["segmentation"] + losses["normals"]
        assert torch.isclose(losses["total"], terms)


def test_loss_values_and_masks():
    model = build_model(
        "realtime",
        tasks=["depth", "segmentation", "normals"],
        num_classes=3,
        loss_weights={"segmentation": 0.5},
    ).eval()
    batch = make_batch(2, 8, 8, num_classes=3)
    out = {
        "depth": batch["depth"].clamp_min(1.0),  # exact where GT >= 1, 0 where invalid
        "segmentation": torch.zeros(2, 3, 8, 8),  # uniform: CE = log 3
        "normals": -batch["normals"],  # opposite: cosine loss 2
    }
    batch["depth"] = batch["depth"].clamp_min(1.0) * (batch["depth"] > 0)
    losses = model.compute_losses(out, batch)
    assert losses["depth"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["segmentation"].item() == pytest.approx(
        torch.log(torch.tensor(3.0)).item(), rel=1e-5
    )
    assert losses["normals"].item() == pytest.approx(2.0, rel=1e-5)
    assert losses["total"].item() == pytest.approx(
        0.5 * losses["segmentation"].item() + 2.0, rel=1e-5
    )
    # samples without labels / normals contribute nothing
    batch["has_labels"][:] = False
    batch["has_normals"][:] = False
    losses = model.compute_losses(out, batch)
    assert losses["segmentation"].item() == 0.0 and losses["normals"].item() == 0.0


def test_config_rebuilds_and_validation():
    model = build_model(
        "realtime", tasks=["depth"], width_mult=0.75, decoder_channels=32, class_weights=None
    )
    clone = build_model("realtime", **model.config())
    clone.load_state_dict(model.state_dict())  # strict: same structure
    assert set(clone(torch.randn(1, 3, 64, 80))) == {"depth"}
    with pytest.raises(ValueError, match="tasks"):
        build_model("realtime", tasks=["flow"])
    with pytest.raises(ValueError, match="class_weights"):
        build_model("realtime", num_classes=3, class_weights=[1.0])
    with pytest.raises(ValueError, match="loss_weighting"):
        build_model("realtime", loss_weighting="magic")
