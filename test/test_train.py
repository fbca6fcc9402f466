"""Training end to end: recipes, loss falls, kill -9 + resume, export (joint_perception.training)."""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from joint_perception.export.train_command import main
from joint_perception.export.train_command import train_and_export as run
from joint_perception.training.config import (
    apply_overrides,
    load_config,
    parse_override,
    resolve_config,
)
from joint_perception.training.lightning_module import (
    JointLightningModule,
    lr_lambda,
    stage_for_epoch,
)

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {
    "name": "realtime",
    "width_mult": 0.35,
    "decoder_channels": 16,
    "head_channels": 8,
    "num_classes": 40,
}


def _tiny_cfg(run_dir: Path, **trainer) -> dict:
    return {
        "seed": 1,
        "run_dir": str(run_dir),
        "input_size": [64, 80],
        "model": dict(TINY_MODEL),
        "data": {
            "train": [
                {
                    "name": "synthetic",
                    "length": 4,
                    "height": 64,
                    "width": 80,
                    "seed": 3,
                    "repeat": 6,
                }
            ],
            "val": [{"name": "synthetic", "tag": "syn", "length": 2, "height": 64, "width": 80}],
            "batch_size": 4,
            "num_workers": 0,
            "augment": {"scale": None, "flip": False, "color_jitter": 0.0},
        },
        "optim": {"optimizer": "adamw", "lr": 3e-3, "schedule": "constant", "weight_decay": 0.0},
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 24,
            "max_epochs": 1000,
            "check_val_every_n_epoch": 4,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "num_sanity_val_steps": 0,
            **trainer,
        },
        "checkpoint": {"monitor": "val/abs_rel", "mode": "min", "every_n_train_steps": 12},
        "export": {"enabled": True},
    }


def _write_recipe(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_overrides_and_recipe_errors(tmp_path):
    assert parse_override("optim.lr=1e-3") == (["optim", "lr"], 1e-3)
    assert parse_override("trainer.devices=[0, 1]") == (["trainer", "devices"], [0, 1])
    assert parse_override("export.input_size=null") == (["export", "input_size"], None)
    cfg = apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr=0.5", "trainer.precision=16-mixed"])
    assert cfg["optim"]["lr"] == 0.5 and cfg["trainer"]["precision"] == "16-mixed"
    with pytest.raises(ValueError, match="unknown recipe key optm "):
        apply_overrides({}, ["optm.lr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: {}\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(bad)
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2


def test_every_shipped_recipe_loads_and_names_registered_parts():
    from joint_perception.data.registry import DATASETS
    from joint_perception.models.registry import list_models

    recipes = sorted((REPO / "config" / "train").rglob("*.yaml"))
    names = {p.stem for p in recipes}
    assert {
        "smoke",
        "realtime",
        "pap_nyuv2",
        "cinet_nyuv2",
        "sosd_nyuv2",
        "sosd_cityscapes",
        "mscnn_crf_nyuv2",
        "kitti",
        "sunrgbd",
        "nyuv2_depth_normals",
    } <= names
    for p in recipes:
        cfg = load_config(p)
        assert cfg["model"]["name"] in list_models(), p
        for spec in cfg["data"]["train"] + (cfg["data"]["val"] or []):
            assert spec["name"] in DATASETS, p


def test_stage_and_schedule_helpers():
    assert [stage_for_epoch([2, 3, 1], e) for e in range(8)] == [1, 1, 2, 2, 2, 3, 3, 3]
    assert stage_for_epoch([], 5) == 0
    poly = lr_lambda("poly", 100, power=0.9)
    assert poly(0) == 1.0 and poly(50) == pytest.approx(0.5**0.9) and poly(100) == 0.0
    cos = lr_lambda("cosine", 100, warmup_steps=10)
    assert cos(0) == pytest.approx(0.1) and cos(50) == pytest.approx(0.5)


def test_em_alternation_moves_the_right_parameters():
    """SOSD-style EM: step 0 (depth) leaves semantic-only parameters untouched, step 1
    (semantic) leaves depth-only parameters untouched; the shared encoder moves in both."""
    import lightning
    from torch.utils.data import DataLoader

    from joint_perception.data.registry import build_dataset
    from joint_perception.data.transforms import build_transforms

    module = JointLightningModule(
        {"name": "sosd", "backbone": "resnet18", "num_classes": 40},
        {"optimizer": "adam", "lr": 1e-3, "em": True, "schedule": "constant"},
    )
    depth_p, sem_p = module.model.em_groups()
    groups = {
        "sem_only": [p for p in sem_p if all(p is not q for q in depth_p)],
        "depth_only": [p for p in depth_p if all(p is not q for q in sem_p)],
        "shared": [p for p in depth_p if any(p is q for q in sem_p)],
    }
    assert all(groups.values())

    def moved(before, params):
        return [not torch.equal(a, b) for a, b in zip(before, params)]

    class Probe(lightning.Callback):
        def __init__(self):
            self.before, self.moved = {}, {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.before[batch_idx] = {k: [p.detach().clone() for p in v] for k, v in groups.items()}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.moved[batch_idx] = {
                k: moved(self.before[batch_idx][k], v) for k, v in groups.items()
            }

    ds = build_dataset("synthetic", "train", length=2, height=64, width=64)
    tf = build_transforms((64, 64), train=False)
    loader = DataLoader([tf(ds[i]) for i in range(2)], batch_size=1)
    probe = Probe()
    trainer = lightning.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    trainer.fit(module, train_dataloaders=loader)
    depth_step, sem_step = probe.moved[0], probe.moved[1]
    assert (
        not any(depth_step["sem_only"])
        and any(depth_step["depth_only"])
        and any(depth_step["shared"])
    )
    assert not any(sem_step["depth_only"]) and any(sem_step["sem_only"]) and any(sem_step["shared"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny_run")
    summary = run(_tiny_cfg(run_dir))
    return run_dir, summary


def _train_losses(run_dir: Path) -> list[float]:
    rows = []
    for f in sorted((run_dir / "logs").glob("version_*/csv/metrics.csv")):
        with open(f) as fh:
            rows += [r for r in csv.DictReader(fh) if r.get("train/total_step")]
    return [float(r["train/total_step"]) for r in rows]


def test_tiny_run_loss_falls(tiny_run):
    run_dir, summary = tiny_run
    assert summary["global_step"] == 24
    losses = _train_losses(run_dir)
    assert len(losses) == 24
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_tiny_run_checkpoints_and_export(tiny_run):
    import onnxruntime as ort

    from joint_perception.models.deploy import DeployWrapper
    from joint_perception.models.serialization import load_checkpoint_model

    run_dir, summary = tiny_run
    # the resolved recipe (every default filled in) is written and loads back as a recipe
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert written == resolve_config(_tiny_cfg(run_dir)) and written["optim"]["weight_decay"] == 0.0
    assert load_config(run_dir / "config.yaml")["optim"] == written["optim"]
    assert Path(summary["last_checkpoint"]).name == "last.ckpt"
    assert summary["best_checkpoint"] and Path(summary["best_checkpoint"]).exists()
    assert not list((run_dir / "checkpoints").glob("*.tmp"))
    export = run_dir / "export"
    meta = json.loads((export / "metadata.json").read_text())
    assert meta["architecture"] == "realtime" and [meta["input_height"], meta["input_width"]] == [
        64,
        80,
    ]
    assert meta["training"]["global_step"] == 24
    assert "val/abs_rel" in meta["metrics"]["last_validation"]
    # ONNX Runtime matches the PyTorch module of the best checkpoint to < 1e-4 (fp32)
    model = load_checkpoint_model(summary["best_checkpoint"]).eval()
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = DeployWrapper(model)(x)
    sess = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": x.numpy()})))
    ref = dict(
        zip(DeployWrapper(model).output_names, ref if isinstance(ref, (tuple, list)) else [ref])
    )
    for name in ("depth", "normals", "confidence"):
        assert np.abs(outs[name] - ref[name].numpy()).max() < 1e-4, name


def test_kill9_then_resume_finishes_at_the_right_step(tmp_path):
    run_dir = tmp_path / "killed"
    cfg = _tiny_cfg(run_dir, max_steps=14)
    cfg["checkpoint"]["every_n_train_steps"] = 2
    cfg["data"]["val"] = []
    cfg["export"]["enabled"] = False
    recipe = _write_recipe(tmp_path / "r.yaml", cfg)
    cmd = [
        sys.executable,
        "-m",
        "joint_perception.export.train_command",
        "--config",
        str(recipe),
        "--resume",
        "auto",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    step = -1
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.exists():
                step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
                if step >= 4:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    assert 4 <= step < 14
    # the checkpoint on disk is complete (atomic write) and a resume completes the run
    killed_at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert killed_at >= step
    assert main(["--config", str(recipe), "--resume", "auto"]) == 0
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 14
    # the resumed run logged only the remaining steps in a new log version
    versions = sorted((run_dir / "logs").glob("version_*"))
    assert len(versions) == 2


def test_ddp_two_cpu_processes(tmp_path):
    """DDP through Lightning's launcher (2 CPU processes, gloo): metrics reduced across ranks,
    rank 0 exports."""
    run_dir = tmp_path / "ddp"
    cfg = _tiny_cfg(run_dir, max_steps=4, devices=2, strategy="ddp", check_val_every_n_epoch=1)
    recipe = _write_recipe(tmp_path / "ddp.yaml", cfg)
    res = subprocess.run(
        [sys.executable, "-m", "joint_perception.export.train_command", "--config", str(recipe)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "MEMBER: 2/2" in res.stderr
    meta = json.loads((run_dir / "export" / "metadata.json").read_text())
    assert meta["training"]["global_step"] == 4
    assert np.isfinite(meta["metrics"]["last_validation"]["val/abs_rel"])


def test_atomic_checkpoint_io_keeps_the_old_file_on_failure(tmp_path):
    from joint_perception.training.train import AtomicCheckpointIO, resolve_resume

    io_ = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io_.save_checkpoint({"global_step": 7}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # unpicklable object
        io_.save_checkpoint({"global_step": 8, "bad": lambda: None}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 7
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert resolve_resume("auto", tmp_path) == str(path)
    assert resolve_resume("auto", tmp_path / "fresh") is None
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        resolve_resume(str(tmp_path / "nope.ckpt"), tmp_path)


def test_run_without_validation_exports_the_final_weights(tmp_path):
    """No validation -> no best checkpoint: the export holds the weights of the last step, not
    those of the last periodic checkpoint (step 5 of 7 here); last.ckpt is saved once more when
    training ends, so it holds them too (a resume of the finished run starts at step 7)."""
    from joint_perception.models.serialization import load_checkpoint_model, load_torch_model

    cfg = _tiny_cfg(tmp_path / "run", max_steps=7)
    cfg["data"]["val"] = []
    cfg["checkpoint"]["every_n_train_steps"] = 5
    summary = run(cfg)
    assert summary["global_step"] == 7 and not summary["best_checkpoint"]
    exported, meta = load_torch_model(tmp_path / "run" / "export")
    assert meta.training["checkpoint"] == "final weights (step 7)"
    last = load_checkpoint_model(summary["last_checkpoint"])
    assert torch.load(summary["last_checkpoint"], weights_only=True)["global_step"] == 7
    diffs = [
        float((a - b).abs().max())
        for a, b in zip(exported.state_dict().values(), last.state_dict().values(), strict=True)
        if a.dtype.is_floating_point
    ]
    assert max(diffs) == 0  # last.ckpt holds the exported final weights


def test_init_from_an_exported_model(tiny_model_dir, tmp_path):
    """``model.init_from`` starts training from an exported model directory (the fine-tune path
    of the shipped default): every tensor equal; another architecture or class count refused
    unless ``init_strict: false`` (then the head stays fresh and the rest is loaded)."""
    from joint_perception.models.serialization import load_torch_model

    exported, _ = load_torch_model(tiny_model_dir)
    cfg = {**TINY_MODEL, "init_from": str(tiny_model_dir)}
    module = JointLightningModule(cfg)
    for k, v in exported.state_dict().items():
        assert torch.equal(module.model.state_dict()[k], v), k
    assert "init_from" not in module.hparams["model"]  # checkpoints never depend on the file
    with pytest.raises(ValueError, match="num_classes|shape-mismatched"):
        JointLightningModule({**cfg, "num_classes": 13})
    loose = JointLightningModule({**cfg, "num_classes": 13, "init_strict": False})
    assert any(k.startswith("heads.seg") for k in loose.init_report["skipped"])
    assert torch.equal(
        loose.model.encoder.features[0][0].weight, exported.encoder.features[0][0].weight
    )
    with pytest.raises(ValueError, match="holds a 'realtime' network"):
        JointLightningModule({"name": "pap", "init_from": str(tiny_model_dir)})
    with pytest.raises(FileNotFoundError):
        JointLightningModule({**cfg, "init_from": str(tmp_path / "nope")})


def test_log_progress_replaces_the_bar_off_a_terminal(caplog):
    """Off a terminal ``train`` logs one line per interval (step/total, loss, rate, ETA) and the
    validation metrics instead of redrawing Lightning's bar into the log file."""
    import io

    import lightning

    from joint_perception.training.progress import LogProgress, progress_bar_wanted

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert progress_bar_wanted(None, io.StringIO()) is False
    assert progress_bar_wanted(None, Tty()) is True
    assert progress_bar_wanted(False, Tty()) is False and progress_bar_wanted(True, io.StringIO())
    with pytest.raises(ValueError):
        LogProgress(0)

    class Tiny(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            loss = self.w(batch[0]).pow(2).mean()
            self.log("train/total_step", loss)
            return loss

        def validation_step(self, batch, _):
            self.log("val/abs_rel", self.w(batch[0]).abs().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(6, 2)))
    trainer = lightning.Trainer(
        accelerator="cpu",
        max_steps=6,
        callbacks=[LogProgress(2)],
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    with caplog.at_level(logging.INFO, logger="joint_perception.train"):
        trainer.fit(Tiny(), train_dataloaders=data, val_dataloaders=data)
    lines = [r.getMessage() for r in caplog.records if r.name == "joint_perception.train"]
    steps = [m for m in lines if m.startswith("step ")]
    assert [m.split(",")[0] for m in steps] == [
        "step 2/6 (33 %)",
        "step 4/6 (67 %)",
        "step 6/6 (100 %)",
    ]
    assert all("loss " in m and "steps/s" in m for m in steps)
    assert any(m.startswith("validation at step 6: abs_rel ") for m in lines)
