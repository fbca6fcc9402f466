"""Nothing runs from a file, nothing is torn (issue 14): torch files are read with
``weights_only=True`` only, in every command and the node; exports are swapped in as a whole;
temporaries of killed writers are removed; ``train --resume auto`` is idempotent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from joint_perception.io_utils import atomic_directory, remove_stale_temps
from joint_perception.models.serialization import load_checkpoint_model, load_torch_model
from joint_perception.runtime.factory import MODEL_LOAD_ERRORS, cannot_start_message
from joint_perception.weights_io import CheckpointError, UntrustedCheckpointError, load_weights

pytestmark = pytest.mark.usefixtures("single_torch_thread")
REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this object creates ``marker`` (builtins.open): proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def poisoned(tmp_path, tiny_model_dir):
    """(a Lightning-style .ckpt, an export directory whose model.pt) carrying a payload, and
    the marker file the payload would create."""
    marker = tmp_path / "payload_ran"
    good = torch.load(tiny_model_dir / "model.pt", weights_only=True)
    ckpt = tmp_path / "evil.ckpt"
    hp = {"architecture": good["architecture"], "model": good["config"]}
    state = {f"model.{k}": v for k, v in good["state_dict"].items()}
    torch.save({"state_dict": state, "hyper_parameters": hp, "x": Payload(marker)}, ckpt)
    export = tmp_path / "evil_export"
    shutil.copytree(tiny_model_dir, export)
    torch.save({**good, "x": Payload(marker)}, export / "model.pt")
    return ckpt, export, marker


def test_load_weights_refuses_pickled_objects(poisoned, tmp_path):
    ckpt, export, marker = poisoned
    for load in (load_weights, load_checkpoint_model):
        with pytest.raises(UntrustedCheckpointError, match="evil.ckpt.*pickled objects"):
            load(ckpt)
    with pytest.raises(UntrustedCheckpointError, match="model.pt"):
        load_torch_model(export)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable torch file"):
        load_weights(junk)
    assert not marker.exists()
    assert issubclass(UntrustedCheckpointError, MODEL_LOAD_ERRORS)
    assert cannot_start_message(CheckpointError("m.pt", "bad")) == "cannot start: m.pt: bad"


def test_torch_backend_refuses_with_a_model_load_error(poisoned):
    from joint_perception.runtime.torch_backend import TorchBackend

    _, export, marker = poisoned
    with pytest.raises(MODEL_LOAD_ERRORS, match="pickled objects"):
        TorchBackend(export, device="cpu")
    assert not marker.exists()


def test_export_onnx_and_evaluate_refuse_a_payload(poisoned, tmp_path, capsys):
    from joint_perception.evaluation.evaluate import main as evaluate_main
    from joint_perception.export.onnx_export import main as export_main

    ckpt, export, marker = poisoned
    out = tmp_path / "out"
    assert export_main(["--checkpoint", str(ckpt), "--out", str(out)]) == 1
    assert export_main(["--checkpoint", str(export), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "evil.ckpt: refused" in err and "model.pt: refused" in err
    assert not out.exists()
    args = ["--dataset", "synthetic", "--arg", "length=1", "--out", str(tmp_path / "ev")]
    assert evaluate_main(["--model", str(ckpt), *args]) == 2
    assert "evil.ckpt: refused" in capsys.readouterr().err
    assert not marker.exists()


def _recipe(tmp_path: Path, run_dir: Path, **model) -> Path:
    cfg = {
        "seed": 1,
        "run_dir": str(run_dir),
        "input_size": [64, 80],
        "model": {
            "name": "realtime",
            "width_mult": 0.35,
            "decoder_channels": 16,
            "head_channels": 8,
            "num_classes": 40,
            **model,
        },
        "data": {
            "train": [{"name": "synthetic", "length": 4, "height": 64, "width": 80, "seed": 3}],
            "val": [],
            "batch_size": 2,
            "num_workers": 0,
            "augment": {"scale": None, "flip": False, "color_jitter": 0.0},
        },
        "optim": {"optimizer": "adamw", "lr": 1e-3, "schedule": "constant"},
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 3,
            "max_epochs": 100,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "num_sanity_val_steps": 0,
        },
        "checkpoint": {"monitor": None, "every_n_train_steps": 2},
        "export": {"enabled": True, "input_size": [64, 80]},
    }
    path = tmp_path / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_refuses_a_payload_in_init_from_and_resume(poisoned, tmp_path, capsys):
    from joint_perception.export.train_command import main

    ckpt, export, marker = poisoned
    recipe = _recipe(tmp_path, tmp_path / "run_init", init_from=str(export))
    assert main(["--config", str(recipe)]) == 2
    assert "model.pt: refused" in capsys.readouterr().err
    recipe = _recipe(tmp_path, tmp_path / "run_resume")
    assert main(["--config", str(recipe), "--resume", str(ckpt)]) == 2
    assert "evil.ckpt: refused" in capsys.readouterr().err
    assert not marker.exists()


def test_node_refuses_a_payload_with_cannot_start(poisoned):
    """backend:=torch on a model.pt with a payload: "cannot start", exit status 2, nothing ran."""
    from joint_perception.ros.local_dds import loopback_environment

    _, export, marker = poisoned
    cmd = [sys.executable, "-m", "joint_perception.ros.perception_node", "--ros-args"]
    cmd += ["-r", "__ns:=/pickleprobe", "-p", "backend:=torch", "-p", f"model:={export}"]
    res = subprocess.run(
        cmd, cwd=REPO, env=loopback_environment(), capture_output=True, text=True, timeout=240
    )
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "cannot start" in res.stderr + res.stdout
    assert "pickled objects" in res.stderr + res.stdout
    assert not marker.exists()


def test_atomic_directory_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "export"
    with atomic_directory(target) as d:
        (d / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as d:
        (d / "a").write_text("new")
        raise RuntimeError("killed half-way")
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
    assert (target / "a").read_text() == "old"
    with atomic_directory(target) as d:
        (d / "b").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_remove_stale_temps_only_of_dead_writers(tmp_path):
    dead = _dead_pid()
    stale_dir = tmp_path / f".export.{dead}.x1.tmp"
    stale_dir.mkdir()
    stale_file = tmp_path / f".model.onnx.{dead}.x2.tmp"
    stale_file.write_bytes(b"half")
    live = tmp_path / f".model.onnx.{os.getpid()}.x3.tmp"
    live.write_bytes(b"in progress")
    other = tmp_path / ".hidden.tmp"
    other.write_text("not ours")
    assert sorted(remove_stale_temps(tmp_path)) == sorted([stale_dir, stale_file])
    assert live.exists() and other.exists()


def test_export_into_a_foreign_directory_is_refused(tmp_path, tiny_model_dir):
    from joint_perception.export.onnx_export import export_onnx

    model = load_torch_model(tiny_model_dir)[0]
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a model export"):
        export_onnx(model, foreign, (64, 80))
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_resume_auto_is_idempotent(tmp_path, capsys):
    """A finished run says so and exits 0; a run killed during the export (state "trained",
    no export) exports without training; both end at the recipe's step."""
    from joint_perception.export.train_command import main
    from joint_perception.training.train import RUN_STATE

    run_dir = tmp_path / "run"
    recipe = _recipe(tmp_path, run_dir)
    assert main(["--config", str(recipe), "--resume", "auto"]) == 0
    state = json.loads((run_dir / RUN_STATE).read_text())
    assert state["status"] == "exported" and state["summary"]["global_step"] == 3
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 3
    logs = sorted(p.name for p in (run_dir / "logs").iterdir())
    onnx_sha = json.loads((run_dir / "export/metadata.json").read_text())["onnx_sha256"]

    capsys.readouterr()
    assert main(["--config", str(recipe), "--resume", "auto"]) == 0
    assert "already finished at step 3" in capsys.readouterr().out
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == logs  # no training

    # killed during the export: the training had ended, the export is not in place
    state["status"] = "trained"
    (run_dir / RUN_STATE).write_text(json.dumps(state))
    shutil.rmtree(run_dir / "export")
    (run_dir / f".export.{_dead_pid()}.zz.tmp").mkdir()  # the killed export's temporary
    assert main(["--config", str(recipe), "--resume", "auto"]) == 0
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == logs  # still no training
    meta = json.loads((run_dir / "export/metadata.json").read_text())
    assert meta["training"]["global_step"] == 3 and meta["onnx_sha256"] == onnx_sha
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def _dead_pid() -> int:
    return int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def test_a_best_checkpoint_deleted_after_last_ckpt_named_it(tmp_path):
    from joint_perception.training.train import _existing_best

    ckpt_dir = tmp_path / "checkpoints"
    ckpt_dir.mkdir()
    kept = ckpt_dir / "best-epoch003-step0000040.ckpt"
    kept.write_bytes(b"x")
    gone = str(ckpt_dir / "best-epoch001-step0000020.ckpt")
    assert _existing_best(gone, ckpt_dir) == str(kept)
    assert _existing_best(str(kept), ckpt_dir) == str(kept)
    kept.unlink()
    assert _existing_best(gone, ckpt_dir) is None
