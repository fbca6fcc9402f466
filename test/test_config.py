"""Training recipe schema (joint_perception.training.config): one source of defaults, every
key checked at any depth with its full key path, in YAML files and in dotted overrides."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import torch
import yaml

from joint_perception.training import config as C
from joint_perception.training.config import (
    RecipeError,
    default_config,
    load_config,
    resolve_config,
    resolve_section,
)

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "config" / "train").rglob("*.yaml"))
TINY_MODEL = {
    "name": "realtime",
    "width_mult": 0.35,
    "decoder_channels": 16,
    "head_channels": 8,
    "num_classes": 40,
}
SYNTHETIC = {"name": "synthetic", "length": 2, "height": 64, "width": 80}


def _recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_recipes_folder_includes_the_ablation_rows():
    assert any(p.parent.name == "ablation" for p in RECIPES) and len(RECIPES) >= 17


@pytest.mark.parametrize(
    "path", RECIPES, ids=lambda p: str(p.relative_to(REPO / "config" / "train"))
)
def test_every_shipped_recipe_is_valid_under_the_schema(path):
    from joint_perception.data.registry import DATASETS
    from joint_perception.models.registry import list_models

    cfg = load_config(path)
    assert cfg["recipe"] == str(path)
    assert cfg["model"]["name"] in list_models()
    assert all(spec["name"] in DATASETS for spec in cfg["data"]["train"] + cfg["data"]["val"])
    assert set(cfg) == set(default_config())
    # a resolved configuration (what run_dir/config.yaml holds) resolves to itself
    assert resolve_config(yaml.safe_load(yaml.safe_dump(cfg))) == cfg


# (YAML text, its key path; the same mistake as an override, its key path)
UNKNOWN_KEYS = [
    ("modle: {}\n", "modle", "modle.name=pap", "modle"),
    ("optim: {lrr: 0.1}\n", "optim.lrr", "optim.lrr=0.1", "optim.lrr"),
    ("data: {batchsize: 4}\n", "data.batchsize", "data.batchsize=4", "data.batchsize"),
    (
        "data: {augment: {flipp: true}}\n",
        "data.augment.flipp",
        "data.augment.flipp=true",
        "data.augment.flipp",
    ),
    (
        "data: {train: [{name: synthetic, length: 2}, {name: synthetic, lenght: 2}]}\n",
        "data.train[1].lenght",
        "data.train[0].lenght=2",
        "data.train[0].lenght",
    ),
    (
        "data: {val: [{name: nyu_folder, tag: x, rooot: d}]}\n",
        "data.val[0].rooot",
        "data.val[0].rooot=d",
        "data.val[0].rooot",
    ),
    (
        "model: {name: realtime, widht_mult: 0.5}\n",
        "model.widht_mult",
        "model.widht_mult=0.5",
        "model.widht_mult",
    ),
    ("trainer: {max_epoch: 3}\n", "trainer.max_epoch", "trainer.max_epoch=3", "trainer.max_epoch"),
    (
        "checkpoint: {monitr: val/miou}\n",
        "checkpoint.monitr",
        "checkpoint.monitr=val/miou",
        "checkpoint.monitr",
    ),
    ("export: {opsett: 18}\n", "export.opsett", "export.opsett=18", "export.opsett"),
]


def test_train_refuses_unknown_engine_options_before_training(tmp_path, capsys):
    """``export.tensorrt`` holds the engine builder's options; the train command (export layer)
    checks them against ``BuildOptions`` before any training starts."""
    from joint_perception.export.train_command import main

    recipe = _recipe(tmp_path, "export: {tensorrt: {precisoin: fp16}}\n")
    assert main(["--config", str(recipe)]) == 2
    assert (
        "unknown recipe key export.tensorrt.precisoin (did you mean export.tensorrt.precision?)"
        in (capsys.readouterr().err)
    )


@pytest.mark.parametrize(
    ("text", "yaml_key", "override", "override_key"), UNKNOWN_KEYS, ids=[u[1] for u in UNKNOWN_KEYS]
)
def test_unknown_keys_are_refused_with_their_key_path(
    tmp_path, text, yaml_key, override, override_key
):
    with pytest.raises(
        ValueError, match=rf"recipe\.yaml: unknown recipe key {re.escape(yaml_key)}\b.*; known: "
    ):
        load_config(_recipe(tmp_path, text))
    base = _recipe(
        tmp_path,
        "data: {train: [{name: synthetic, length: 2}], val: [{name: nyu_folder, root: d}]}\n",
    )
    load_config(base)  # valid without the override
    with pytest.raises(
        ValueError,
        match=rf"override '{re.escape(override)}': unknown recipe key "
        rf"{re.escape(override_key)}\b.*; known: ",
    ):
        load_config(base, [override])


def test_error_messages_list_the_known_keys_and_suggest_the_nearest():
    with pytest.raises(ValueError) as exc:
        load_config(None, ["optim.lrr=0.1"])
    msg = str(exc.value)
    assert msg.startswith(
        "override 'optim.lrr=0.1': unknown recipe key optim.lrr (did you mean optim.lr?); known: "
    )
    assert "optim.lr, optim.weight_decay" in msg
    with pytest.raises(
        ValueError,
        match=r"model\.widht_mult for model 'realtime' \(did you mean model\.width_mult\?\)",
    ):
        load_config(None, ["model.widht_mult=0.5"])
    with pytest.raises(
        ValueError,
        match=r"data\.train\[0\]\.rooot for data set 'nyu_folder' \(did you mean "
        r"data\.train\[0\]\.root\?\)",
    ):
        load_config(None, ["data.train=[{name: nyu_folder, rooot: x}]"])


def test_model_kwargs_follow_the_selected_network(tmp_path):
    # pap has a backbone but no width_mult; the message names the model and its arguments
    recipe = _recipe(tmp_path, "model: {name: pap, backbone: resnet18, width_mult: 0.5}\n")
    with pytest.raises(
        ValueError, match=r"unknown recipe key model\.width_mult for model 'pap'.*model\.backbone"
    ):
        load_config(recipe)
    with pytest.raises(
        ValueError, match=r"recipe key model\.name: unknown model 'papp'; known: .*pap"
    ):
        load_config(None, ["model.name=papp"])
    cfg = load_config(
        None,
        [
            "model.name=sosd",
            "model.backbone=resnet18",
            "model.init_from=models/x",
            "model.init_strict=false",
        ],
    )
    assert cfg["model"] == {
        "name": "sosd",
        "backbone": "resnet18",
        "init_from": "models/x",
        "init_strict": False,
    }


def test_data_set_specs_are_checked_against_their_reader():
    from joint_perception.data.registry import dataset_options

    assert {"length", "seed", "noise", "max_items", "repeat"} <= set(dataset_options("synthetic"))
    assert "split" not in dataset_options("nyuv2_labeled")  # build_dataset sets it
    with pytest.raises(ValueError, match=r"data\.train\[0\]\.tag for data set 'synthetic'"):
        load_config(
            None, ["data.train=[{name: synthetic, length: 2, tag: x}]"]
        )  # tags name val sets only
    with pytest.raises(
        ValueError, match=r"recipe key data\.val\[0\]\.name: unknown data set 'synth'"
    ):
        load_config(None, ["data.val=[{name: synth}]"])
    # teacher pseudo-labels are a training-set option (training.datamodule.build_spec)
    spec = "{name: synthetic, length: 2, teacher_labels: t.tflite, teacher_min_confidence: 0.8}"
    assert (
        load_config(None, [f"data.train=[{spec}]"])["data"]["train"][0]["teacher_min_confidence"]
        == 0.8
    )
    with pytest.raises(ValueError, match=r"unknown recipe key data\.val\[0\]\.teacher_labels "):
        load_config(None, [f"data.val=[{spec}]"])
    cfg = load_config(None, ["data.train=[{name: synthetic, length: 2}]", "data.train[0].length=5"])
    assert cfg["data"]["train"] == [{"name": "synthetic", "length": 5}]


def test_types_choices_and_shapes_are_checked(tmp_path):
    with pytest.raises(
        ValueError, match=r"override 'optim\.lr=abc': recipe key optim\.lr: .*'abc'"
    ):
        load_config(None, ["optim.lr=abc"])
    with pytest.raises(
        ValueError, match=r"recipe key optim\.optimizer: 'adamx' is not one of sgd, adam, adamw"
    ):
        load_config(None, ["optim.optimizer=adamx"])
    with pytest.raises(
        ValueError, match=r"recipe key checkpoint\.mode: 'maximum' is not one of min, max"
    ):
        load_config(None, ["checkpoint.mode=maximum"])
    with pytest.raises(ValueError, match=r"recipe key input_size: expected \[height, width\]"):
        load_config(None, ["input_size=[240]"])
    with pytest.raises(ValueError, match=r"recipe\.yaml: recipe key data\.train: expected a list"):
        load_config(_recipe(tmp_path, "data: {train: {name: synthetic}}\n"))
    with pytest.raises(
        ValueError, match=r"recipe\.yaml: recipe key optim: expected a mapping, got 3"
    ):
        load_config(_recipe(tmp_path, "optim: 3\n"))
    with pytest.raises(
        ValueError, match=r"recipe key trainer\.callbacks: set by the train command"
    ):
        load_config(None, ["trainer.callbacks=[]"])
    with pytest.raises(ValueError, match=r"recipe key stages: epochs per stage must be >= 0"):
        load_config(None, ["stages=[2, -1]"])
    with pytest.raises(ValueError, match=r"must look like key\.sub=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ValueError, match=r"recipe\.yaml: a recipe must be a mapping"):
        load_config(_recipe(tmp_path, "- 1\n"))
    with pytest.raises(ValueError, match=r"invalid YAML in .*recipe\.yaml"):
        load_config(_recipe(tmp_path, "optim: {lr: [1\n"))
    with pytest.raises(FileNotFoundError, match="training recipe not found"):
        load_config(tmp_path / "missing.yaml")


def test_yaml_1_1_floats_parse_as_floats_everywhere(tmp_path):
    recipe = _recipe(
        tmp_path,
        "optim: {lr: 1e-3, weight_decay: 5e-4}\n"
        "model: {name: mscnn_crf, segmentation_weight: 1e-6}\n"
        "data: {train: [{name: synthetic, length: 2, noise: 1e-3}]}\n",
    )
    cfg = load_config(recipe, ["optim.momentum=9e-1", "data.canonical_focal=2e2"])
    assert (
        cfg["optim"]["lr"] == 1e-3
        and cfg["optim"]["weight_decay"] == 5e-4
        and cfg["optim"]["momentum"] == 0.9
    )
    assert cfg["model"]["segmentation_weight"] == 1e-6 and cfg["data"]["train"][0]["noise"] == 1e-3
    assert cfg["data"]["canonical_focal"] == 200.0
    assert C.parse_override("optim.lr=1e-3") == (["optim", "lr"], 1e-3)
    assert C.parse_override("data.train[1].root=a=b") == (["data", "train", "1", "root"], "a=b")


def test_open_sections_accept_their_components_arguments():
    cfg = load_config(
        None,
        [
            "trainer.max_time=00:00:04:00",
            "trainer.num_sanity_val_steps=0",
            "data.augment.scale=[1.0, 1.2]",
            "export.tensorrt.workspace_mb=512",
        ],
    )
    assert (
        cfg["trainer"]["max_time"] == "00:00:04:00" and cfg["trainer"]["num_sanity_val_steps"] == 0
    )
    assert cfg["data"]["augment"] == {"scale": [1.0, 1.2]} and cfg["export"]["tensorrt"] == {
        "workspace_mb": 512
    }


def test_typed_trainer_fields_are_trainer_arguments():
    from lightning.pytorch import Trainer

    params = inspect.signature(Trainer.__init__).parameters
    assert {f.name for f in dataclasses.fields(C.TrainerConfig)} <= set(params)


@pytest.mark.parametrize(
    "section",
    [
        C.RecipeConfig,
        C.ModelConfig,
        C.DataConfig,
        C.OptimConfig,
        C.TrainerConfig,
        C.CheckpointConfig,
        C.ExportConfig,
    ],
)
def test_every_schema_field_is_documented(section):
    doc = inspect.getdoc(section)
    for f in dataclasses.fields(section):
        assert f"\n    {f.name}:" in doc or f" {f.name}:" in doc or f"{f.name}," in doc, (
            f"{section.__name__}.{f.name}"
        )


def test_weight_decay_and_other_defaults_have_one_source():
    """The schema default is what the LightningModule's optimiser and the DataModule use when
    a configuration leaves the key out (they used to restate their own, e.g. weight_decay 0)."""
    from joint_perception.training.datamodule import JointDataModule
    from joint_perception.training.lightning_module import JointLightningModule

    wd = C.OptimConfig().weight_decay
    assert (
        default_config()["optim"]["weight_decay"]
        == wd
        == resolve_section("optim", {})["weight_decay"]
    )
    module = JointLightningModule(TINY_MODEL)  # no optim section at all
    assert module.optim_cfg == default_config()["optim"] == module.hparams["optim"]
    opt = module.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    assert {g["weight_decay"] for g in opt.param_groups} == {wd}
    sgd = JointLightningModule(TINY_MODEL, {"optimizer": "sgd"}).configure_optimizers()["optimizer"]
    assert {g["weight_decay"] for g in sgd.param_groups} == {wd}
    assert {g["momentum"] for g in sgd.param_groups} == {C.OptimConfig().momentum}
    with pytest.raises(RecipeError, match=r"unknown recipe key optim\.lrr"):
        JointLightningModule(TINY_MODEL, {"lrr": 0.1})
    dm = JointDataModule({"train": [SYNTHETIC]}, (64, 80))
    assert dm.cfg == {**default_config()["data"], "train": [SYNTHETIC]}
    with pytest.raises(RecipeError, match=r"unknown recipe key data\.num_worker\b"):
        JointDataModule({"train": [SYNTHETIC], "num_worker": 0}, (64, 80))


def test_train_cli_refuses_a_typo_with_status_2(tmp_path, capsys):
    from joint_perception.export.train_command import main

    recipe = _recipe(tmp_path, f"run_dir: {tmp_path / 'run'}\n")
    assert main(["--config", str(recipe), "optim.lrr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "train: override 'optim.lrr=0.1': unknown recipe key optim.lrr" in err
    assert main(["--config", str(_recipe(tmp_path, "optim: {lrr: 0.1}\n"))]) == 2
    assert "recipe.yaml: unknown recipe key optim.lrr" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=0", "data.batch_size: must be >= 1, got 0"),
        ("data.num_workers=-1", "data.num_workers: must be >= 0"),
        ("optim.lr=-1", "optim.lr: must be > 0, got -1.0"),
        ("optim.lr=nan", "optim.lr: must be finite, got nan"),
        ("optim.weight_decay=.inf", "optim.weight_decay: must be finite"),
        ("data.canonical_focal=0", "data.canonical_focal: must be > 0"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches: must be >= 1"),
        ("export.verify_atol=0", "export.verify_atol: must be > 0"),
    ],
)
def test_numbers_out_of_range_are_refused_with_their_key(override, message):
    """Values only Lightning or torch would refuse (after train has written the run
    directory's config.yaml and run_state.json) are refused with the recipe."""
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(None, [override])


def test_train_refuses_a_bad_number_without_touching_a_finished_run(tmp_path, capsys):
    from joint_perception.export.train_command import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "run_state.json").write_text('{"status": "exported"}')
    (run / "config.yaml").write_text("kept: true\n")
    recipe = _recipe(tmp_path, f"run_dir: {run}\n")
    assert main(["--config", str(recipe), "data.batch_size=0"]) == 2
    assert "data.batch_size: must be >= 1" in capsys.readouterr().err
    assert (run / "run_state.json").read_text() == '{"status": "exported"}'
    assert (run / "config.yaml").read_text() == "kept: true\n"
    assert main(["--config", str(tmp_path)]) == 2
    assert "a training recipe is a YAML file, not a directory" in capsys.readouterr().err


def test_train_resume_needs_a_lightning_checkpoint_file(tmp_path, capsys):
    from joint_perception.export.train_command import main

    recipe = _recipe(tmp_path, f"run_dir: {tmp_path / 'run'}\n")
    model_pt = tmp_path / "model.pt"
    torch.save({"architecture": "realtime", "config": {}, "state_dict": {}}, model_pt)
    assert main(["--config", str(recipe), "--resume", str(model_pt)]) == 2
    assert "not a Lightning training checkpoint" in capsys.readouterr().err
    assert main(["--config", str(recipe), "--resume", str(tmp_path)]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert not (tmp_path / "run" / "run_state.json").exists()
