"""The four paper recipes (config/train/<paper>_nyuv2.yaml): they state the papers' schedules,
run them end to end on stand-ins of the real NYUv2 files (light backbones, a few steps), pass
the export parity gate, and stop with a message -- never a traceback, never a silent zero
loss -- when a weights file, a data set or a task's ground truth is missing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from nyu_standin import write_backbone_weights, write_nyud_mt, write_nyuv2_labeled

from joint_perception.export.train_command import main
from joint_perception.training.config import load_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "config" / "train"

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_recipes_state_the_papers_schedules_and_imagenet_init():
    pap = load_config(RECIPES / "pap_nyuv2.yaml")
    assert pap["optim"]["lr"] == 0.01 and pap["optim"]["groups"] == [
        {"name": "pretrained", "modules": ["backbone"], "lr": 1e-4}
    ]
    assert [s["epochs"] for s in pap["stages"]] == [200, 100]
    assert pap["trainer"]["max_epochs"] == 300
    assert pap["model"]["pair_weight"] == 0.2 and pap["model"]["num_pairs"] == 300
    cinet = load_config(RECIPES / "cinet_nyuv2.yaml")
    assert len(cinet["stages"]) == 3 and all("lr" in s for s in cinet["stages"])
    assert cinet["model"]["con_weight"] == 5.0 and cinet["optim"]["weight_decay"] == 5e-4
    mscnn = load_config(RECIPES / "mscnn_crf_nyuv2.yaml")
    assert mscnn["model"]["silog_lambda"] == 1.0 and len(mscnn["stages"]) == 3
    sosd = load_config(RECIPES / "sosd_nyuv2.yaml")
    assert sosd["optim"]["optimizer"] == "adam" and sosd["optim"]["lr"] == 1e-4
    assert sosd["optim"]["em"] and sosd["data"]["batch_size"] == 16
    assert sosd["trainer"]["max_epochs"] == 60
    assert sosd["model"]["pretrained_key_map"] == "deeplab_xception"
    for cfg, weights in (
        (pap, "resnet50"),
        (cinet, "resnet101"),
        (mscnn, "vgg16"),
        (sosd, "xception65"),
    ):
        assert Path(cfg["model"]["pretrained"]).name.startswith(weights), cfg["recipe"]


def test_pap_kitti_recipe_freezes_real_branches():
    """The fine-tune recipe's frozen prefixes exist in a PAP network, and they freeze the
    segmentation and normals branches only."""
    from joint_perception.models import build_model
    from joint_perception.training.schedule import check_module_prefixes, set_frozen

    cfg = load_config(RECIPES / "pap_kitti.yaml")
    freeze = cfg["stages"][0]["freeze"]
    model = build_model("pap", backbone="resnet18", channels=32, num_classes=40)
    check_module_prefixes(model, freeze, "stages[0].freeze")
    set_frozen(model, freeze)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("reconstruct.depth.") for n in trainable)
    assert not any(
        n.startswith(("reconstruct.segmentation", "task_nets.normals")) for n in trainable
    )
    assert cfg["data"]["allow_missing_targets"] == ["segmentation", "normals"]


def _common(run_dir: Path, size=(48, 64)) -> list[str]:
    h, w = size
    return [
        f"run_dir={run_dir}",
        f"input_size=[{h}, {w}]",
        f"export.input_size=[{h}, {w}]",
        "data.batch_size=2",
        "data.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.check_val_every_n_epoch=1",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "trainer.num_sanity_val_steps=0",
        "checkpoint.every_n_train_steps=0",
    ]


def _nyuv2_data(files: dict[str, Path]) -> list[str]:
    spec = (
        f"{{name: nyuv2_labeled, mat_path: {files['mat']}, splits_path: {files['splits']}, "
        f"class_mapping: {files['classes']}, num_classes: 40"
    )
    return [f"data.train=[{spec}}}]", f"data.val=[{spec}, tag: nyuv2_654}}]"]


def _stages_seen(run_dir: Path) -> set[float]:
    seen = set()
    for f in run_dir.glob("logs/version_*/csv/metrics.csv"):
        with open(f) as fh:
            seen |= {float(r["train/stage"]) for r in csv.DictReader(fh) if r.get("train/stage")}
    return seen


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu_standin")
    return {
        "nyuv2": write_nyuv2_labeled(root / "nyuv2"),
        "nyud_mt": write_nyud_mt(root / "NYUD_MT"),
        "resnet18": write_backbone_weights(root / "pretrained" / "resnet18.pth", "resnet18"),
    }


def test_cinet_recipe_runs_its_three_stages_and_exports(standin, tmp_path, capsys):
    run_dir = tmp_path / "cinet"
    rc = main(
        [
            "--config",
            str(RECIPES / "cinet_nyuv2.yaml"),
            *_common(run_dir),
            *_nyuv2_data(standin["nyuv2"]),
            "model.backbone=resnet18",
            f"model.pretrained={standin['resnet18']}",
            "model.channels=32",
            "model.key_channels=8",
            "model.decoder_channels=[16, 16, 16]",
            "stages[0].epochs=1",
            "stages[1].epochs=1",
            "stages[2].epochs=1",
            "trainer.max_epochs=3",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert _stages_seen(run_dir) == {1.0, 2.0, 3.0}
    assert (run_dir / "export" / "metadata.json").exists()  # passed the 1e-4 parity gate


def test_mscnn_recipe_runs_its_three_stages_and_exports(standin, tmp_path, capsys):
    run_dir = tmp_path / "mscnn"
    vgg = write_backbone_weights(tmp_path / "vgg16.pth", "vgg16")
    rc = main(
        [
            "--config",
            str(RECIPES / "mscnn_crf_nyuv2.yaml"),
            *_common(run_dir),
            *_nyuv2_data(standin["nyuv2"]),
            f"model.pretrained={vgg}",
            "stages[0].epochs=1",
            "stages[1].epochs=1",
            "stages[2].epochs=1",
            "trainer.max_epochs=3",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert _stages_seen(run_dir) == {1.0, 2.0, 3.0}
    assert (run_dir / "export" / "metadata.json").exists()


def test_sosd_recipe_runs_em_and_exports(standin, tmp_path, capsys):
    run_dir = tmp_path / "sosd"
    rc = main(
        [
            "--config",
            str(RECIPES / "sosd_nyuv2.yaml"),
            *_common(run_dir),
            *_nyuv2_data(standin["nyuv2"]),
            "model.backbone=resnet18",
            f"model.pretrained={standin['resnet18']}",
            "model.pretrained_key_map=null",
            "trainer.max_epochs=1",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert (run_dir / "export" / "metadata.json").exists()


def test_pap_recipe_runs_on_nyud_mt_with_its_fine_tune_stage(standin, tmp_path, capsys):
    run_dir = tmp_path / "pap"
    spec = f"{{name: nyud_mt, root: {standin['nyud_mt']}}}"
    rc = main(
        [
            "--config",
            str(RECIPES / "pap_nyuv2.yaml"),
            *_common(run_dir, (64, 64)),
            f"data.train=[{spec}]",
            f"data.val=[{{name: nyud_mt, root: {standin['nyud_mt']}, tag: val}}]",
            "model.backbone=resnet18",
            f"model.pretrained={standin['resnet18']}",
            "model.channels=32",
            "stages[0].epochs=1",
            "stages[1].epochs=1",
            "trainer.max_epochs=2",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert _stages_seen(run_dir) == {1.0, 2.0}
    assert (run_dir / "export" / "metadata.json").exists()


def test_pap_on_the_mat_without_normals_stops_with_a_message(standin, tmp_path, capsys):
    rc = main(
        [
            "--config",
            str(RECIPES / "pap_nyuv2.yaml"),
            *_common(tmp_path / "pap_mat"),
            *_nyuv2_data(standin["nyuv2"]),
            "model.backbone=resnet18",
            f"model.pretrained={standin['resnet18']}",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "trains normals" in err and "nyuv2_labeled" in err, err
    assert "supplies depth, segmentation" in err and "docs/data.md" in err
    assert "Traceback" not in err


def test_missing_weights_and_data_stop_with_messages(standin, tmp_path, capsys):
    rc = main(["--config", str(RECIPES / "cinet_nyuv2.yaml"), *_common(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 2 and "pretrained weights not found" in err and "docs/data.md" in err, err
    # weights present, NYUD_MT absent (the shipped data path)
    rc = main(
        [
            "--config",
            str(RECIPES / "pap_nyuv2.yaml"),
            *_common(tmp_path / "p"),
            "model.backbone=resnet18",
            f"model.pretrained={standin['resnet18']}",
            f"data.train[0].root={tmp_path / 'no_NYUD_MT'}",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "NYUD_MT split list not found" in err and "docs/data.md" in err, err
    # NYUD_MT without normals/: PAP refuses to train its normals head on nothing
    bare = write_nyud_mt(tmp_path / "NYUD_MT_bare", normals=False)
    rc = main(
        [
            "--config",
            str(RECIPES / "pap_nyuv2.yaml"),
            *_common(tmp_path / "p2"),
            "model.backbone=resnet18",
            f"model.pretrained={standin['resnet18']}",
            f"data.train[0].root={bare}",
            "data.val=[]",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "trains normals" in err, err


def test_a_failed_parity_check_keeps_the_checkpoint_and_exits_1(standin, tmp_path, capsys):
    run_dir = tmp_path / "parity"
    rc = main(
        [
            "--config",
            str(RECIPES / "sosd_nyuv2.yaml"),
            *_common(run_dir),
            *_nyuv2_data(standin["nyuv2"]),
            "model.backbone=resnet18",
            f"model.pretrained={standin['resnet18']}",
            "model.pretrained_key_map=null",
            "trainer.max_epochs=1",
            "export.verify_atol=1e-12",  # no fp32 graph meets this: the real check fails
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "checkpoint kept at" in err and "ONNX Runtime differs from PyTorch" in err
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert not (run_dir / "export" / "metadata.json").exists()
