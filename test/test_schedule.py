"""Recipe schedules: stages with their own LR / epochs / frozen modules, per-layer LR groups
(joint_perception.training.schedule and its use by the LightningModule)."""

from __future__ import annotations

import pytest
import torch

from joint_perception.models import build_model
from joint_perception.training.config import load_config
from joint_perception.training.schedule import (
    StagedLR,
    build_param_groups,
    normalise_stages,
    set_frozen,
    stage_for_epoch,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

PAP_SMALL = dict(backbone="resnet18", channels=32, affinity_scale=16, num_classes=40)


def test_stages_short_and_long_form():
    stages = normalise_stages([2, {"epochs": 3, "lr": 0.1, "freeze": ["backbone"]}, 1])
    assert [s.epochs for s in stages] == [2, 3, 1]
    assert [s.model_stage for s in stages] == [1, 2, 3]
    assert [s.name for s in stages] == ["stage1", "stage2", "stage3"]
    assert stages[1].lr == 0.1 and stages[1].freeze == ["backbone"]
    assert [stage_for_epoch(stages, e) for e in range(8)] == [1, 1, 2, 2, 2, 3, 3, 3]
    again = normalise_stages([{"epochs": 4, "name": "finetune", "model_stage": 0}])
    assert again[0].model_stage == 0 and again[0].name == "finetune"
    with pytest.raises(ValueError, match=r"stages\[0\].lrr: unknown stage key"):
        normalise_stages([{"epochs": 1, "lrr": 1}])
    with pytest.raises(ValueError, match=r"stages\[1\].epochs: missing"):
        normalise_stages([1, {"lr": 0.1}])
    with pytest.raises(ValueError, match=r"stages\[0\].lr: must be > 0"):
        normalise_stages([{"epochs": 1, "lr": 0}])
    # the same checks from a recipe, with the key path
    with pytest.raises(ValueError, match=r"recipe key stages\[0\].freez: unknown stage key"):
        load_config(None, ["stages=[{epochs: 1, freez: [backbone]}]"])
    with pytest.raises(ValueError, match=r"optim.groups\[0\]: set exactly one of lr and lr_scale"):
        load_config(None, ["optim.groups=[{modules: [backbone], lr: 1, lr_scale: 2}]"])
    with pytest.raises(ValueError, match=r"unknown recipe key optim.groups\[0\].module "):
        load_config(None, ["optim.groups=[{module: [backbone], lr: 1}]"])


def test_staged_lr_multiplier():
    stages = normalise_stages([{"epochs": 2}, {"epochs": 1, "lr": 0.001}])
    # 10 steps per epoch, 30 in all, base 0.01, poly 1.0 over the run
    f = StagedLR(stages, 0.01, "poly", 30, steps_per_epoch=10, power=1.0)
    assert f(0) == pytest.approx(1.0) and f(10) == pytest.approx(1 - 10 / 30)
    assert f(20) == pytest.approx(0.1 * (1 - 20 / 30))  # stage 2: lr 0.001 = 0.1 x base
    # restarted per stage: stage 2 starts again at its full LR
    g = StagedLR(stages, 0.01, "poly", 30, steps_per_epoch=10, power=1.0, per_stage=True)
    assert g(19) == pytest.approx(1 - 19 / 20) and g(20) == pytest.approx(0.1)
    assert g(25) == pytest.approx(0.1 * 0.5)
    # warm-up; before the loader length is known the stages cannot be placed: run-wide decay
    w = StagedLR(stages, 0.01, "constant", 30, steps_per_epoch=10, warmup_steps=4)
    assert [w(s) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert StagedLR(stages, 0.01, "constant", 30)(25) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        StagedLR(stages, 0.01, "step", 30)


def test_param_groups_by_module_prefix_pap_rates():
    torch.manual_seed(0)
    model = build_model("pap", **PAP_SMALL)
    groups = build_param_groups(
        model, 0.01, [{"name": "pretrained", "modules": ["backbone"], "lr": 1e-4}]
    )
    assert [(g["name"], g["lr"]) for g in groups] == [("pretrained", 1e-4), ("rest", 0.01)]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.backbone.parameters()}
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    scaled = build_param_groups(
        model, 0.01, [{"modules": ["backbone", "fuse"], "lr_scale": 0.1, "weight_decay": 0.0}]
    )
    assert scaled[0]["lr"] == pytest.approx(1e-3) and scaled[0]["weight_decay"] == 0.0
    # no groups: the model's own (CI-Net backbone x 0.1)
    cinet = build_model(
        "cinet", backbone="resnet18", channels=16, key_channels=4, decoder_channels=(8, 8, 8)
    )
    own = build_param_groups(cinet, 0.01, [])
    assert [g["lr"] for g in own] == [pytest.approx(1e-3), 0.01]
    with pytest.raises(ValueError, match=r"'backbon' matches no parameter.*backbone, stage_proj"):
        build_param_groups(model, 0.01, [{"modules": ["backbon"], "lr": 1e-4}])


def test_set_frozen_and_restore():
    model = build_model("pap", **PAP_SMALL)
    trainable = set_frozen(model, ["backbone", "task_nets.depth"])
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not any(p.requires_grad for p in model.task_nets["depth"].parameters())
    assert all(p.requires_grad for p in model.task_nets["normals"].parameters())
    set_frozen(model, [], trainable)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="'head' matches no parameter"):
        set_frozen(model, ["head"])


def test_two_stage_run_uses_each_stages_lr_and_freezes_the_backbone():
    """PAP-style recipe: pretrained encoder at 1e-4 and the rest at 0.01, then a fine-tune
    stage at a tenth of that with the encoder frozen (weights and BatchNorm statistics)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from joint_perception.data.registry import build_dataset
    from joint_perception.data.transforms import build_transforms
    from joint_perception.training.lightning_module import JointLightningModule

    torch.manual_seed(0)
    module = JointLightningModule(
        {"name": "pap", **PAP_SMALL},
        {
            "optimizer": "sgd",
            "lr": 0.01,
            "weight_decay": 1e-4,
            "schedule": "constant",
            "groups": [{"name": "pretrained", "modules": ["backbone"], "lr": 1e-4}],
        },
        stages=[{"epochs": 1, "name": "joint"}, {"epochs": 1, "lr": 1e-3, "freeze": ["backbone"]}],
    )
    ds = build_dataset("synthetic", "train", length=4, height=64, width=64)
    tf = build_transforms((64, 64), train=False)
    loader = DataLoader([tf(ds[i]) for i in range(4)], batch_size=2)

    class Probe(L.Callback):
        def __init__(self):
            self.lrs, self.snap = {}, {}

        def on_train_epoch_start(self, trainer, pl_module):
            m = pl_module.model
            self.snap[trainer.current_epoch] = (
                {k: v.clone() for k, v in m.backbone.state_dict().items()},
                {k: v.clone() for k, v in m.fuse.state_dict().items()},
            )

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            opt = trainer.optimizers[0]
            self.lrs.setdefault(trainer.current_epoch, []).append(
                {g["name"]: g["lr"] for g in opt.param_groups}
            )

    probe = Probe()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[probe],
    )
    trainer.fit(module, train_dataloaders=loader)
    # at a batch end the scheduler has stepped: the LRs shown are those of the next step;
    # 2 steps per epoch, so step 1 is in stage 1 and steps 2, 3, ... in stage 2
    assert probe.lrs[0][0] == pytest.approx({"pretrained": 1e-4, "rest": 0.01})
    assert probe.lrs[0][1] == pytest.approx({"pretrained": 1e-5, "rest": 1e-3})
    assert probe.lrs[1][-1] == pytest.approx({"pretrained": 1e-5, "rest": 1e-3})
    bb0, fuse0 = probe.snap[0]
    bb1, fuse1 = probe.snap[1]
    bb_end = module.model.backbone.state_dict()
    fuse_end = module.model.fuse.state_dict()
    # stage 1: everything learns; stage 2: the backbone (incl. BN running stats) stays
    assert any(not torch.equal(bb0[k], bb1[k]) for k in bb0 if "running_mean" in k)
    assert any(not torch.equal(bb0[k], bb1[k]) for k in bb0 if k.endswith("weight"))
    assert all(torch.equal(bb1[k], bb_end[k]) for k in bb1)
    assert any(not torch.equal(fuse1[k], fuse_end[k]) for k in fuse1)
    assert all(p.requires_grad is False for p in module.model.backbone.parameters())
