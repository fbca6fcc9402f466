"""ONNX export (DeployWrapper contract, files, metadata), the ORT backend and the CLI."""

import json

import numpy as np
import pytest
import torch

from joint_perception.export.onnx_export import export_onnx, main
from joint_perception.io_utils import sha256_file
from joint_perception.models import build_model
from joint_perception.models.deploy import DeployWrapper
from joint_perception.models.serialization import load_checkpoint_model, load_torch_model
from joint_perception.nyuv2_classes import NAMES40
from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

H, W = 120, 160


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("realtime")
    out = tmp_path_factory.mktemp("export")
    onnx_path, meta = export_onnx(
        model,
        out,
        input_size=(H, W),
        metadata_overrides={"canonical_focal": 130.0, "training": {"dataset": "none"}},
    )
    return model, out, onnx_path, meta


def test_files_and_metadata(exported):
    model, out, onnx_path, meta = exported
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.onnx", "model.pt"]
    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk["onnx_sha256"] == sha256_file(onnx_path) == meta.onnx_sha256
    assert on_disk["architecture"] == "realtime" and on_disk["onnx_opset"] == 17
    assert (on_disk["input_height"], on_disk["input_width"]) == (H, W)
    assert on_disk["outputs"] == ["depth", "labels", "confidence", "normals"]
    assert on_disk["tasks"] == ["depth", "segmentation", "normals"]
    assert on_disk["class_names"] == list(NAMES40)
    assert on_disk["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert on_disk["canonical_focal"] == 130.0 and on_disk["max_depth"] == 10.0
    assert on_disk["training"]["dataset"] == "none" and "git_revision" in on_disk["training"]
    assert on_disk["extra"]["config"] == model.config()
    check = on_disk["extra"]["onnx_check"]
    assert set(check["max_abs_diff"]) == {"depth", "confidence", "normals"}
    assert max(check["max_abs_diff"].values()) < 1e-4 and check["label_agreement"] > 0.999
    # PASCAL VOC bit-interleave palette (colormap.label_palette): void black, 1 -> (128, 0, 0)
    assert len(on_disk["class_colors"]) == 41
    assert on_disk["class_colors"][:3] == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]


def test_ort_backend_matches_torch_wrapper(exported):
    model, out, onnx_path, meta = exported
    backend = OnnxRuntimeBackend(out, intra_op_threads=1)
    assert backend.name == "onnxruntime" and backend.device == "cpu"
    assert backend.reason == "onnxruntime (CPUExecutionProvider)"
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(3))
    pred = backend.predict(x.numpy())  # batch 2 runs as two static-batch chunks
    wrapper = DeployWrapper(model.eval())
    with torch.no_grad():
        depth, labels, conf, normals = wrapper(x)
        logits = model((x - wrapper.mean) / wrapper.std)["segmentation"]
    assert pred.depth.shape == (2, H, W) and pred.normals.shape == (2, H, W, 3)
    assert pred.labels.dtype == np.int32 and pred.labels.min() >= 1 and pred.labels.max() <= 40
    assert np.abs(pred.depth - depth[:, 0].numpy()).max() < 1e-4
    assert np.abs(pred.normals - normals.permute(0, 2, 3, 1).numpy()).max() < 1e-4
    assert np.mean(pred.labels == labels.numpy()) > 0.999
    # confidence is the max softmax probability; labels are argmax + 1
    soft = torch.softmax(logits, dim=1)
    assert torch.allclose(conf, soft.max(dim=1).values, atol=1e-6)
    assert torch.equal(labels.long(), soft.argmax(dim=1) + 1)
    assert np.abs(pred.confidence - conf.numpy()).max() < 1e-4
    with pytest.raises(ValueError, match="model expects 120x160"):
        backend.predict(np.zeros((1, 3, 60, 80), np.float32))
    with pytest.raises(ValueError, match="float32"):
        backend.predict(np.zeros((1, 3, H, W), np.float64))


def test_torch_model_roundtrip(exported):
    model, out, _, meta = exported
    back, back_meta = load_torch_model(out)
    assert back_meta == meta and not back.training
    x = torch.rand(1, 3, H, W)
    with torch.no_grad():
        a, b = model.eval()(x), back(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_onnx_is_refused(exported, tmp_path):
    _, out, _, _ = exported
    for name in ("model.onnx", "metadata.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    with open(tmp_path / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="does not match metadata"):
        OnnxRuntimeBackend(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        OnnxRuntimeBackend(tmp_path / "nowhere")


def test_depth_only_model_and_bad_arguments(tmp_path):
    model = build_model("realtime", tasks=["depth"], decoder_channels=16, head_channels=8)
    onnx_path, meta = export_onnx(model, tmp_path, input_size=(64, 80))
    assert meta.outputs == ["depth"] and meta.class_names == []
    pred = OnnxRuntimeBackend(onnx_path).predict(np.full((1, 3, 64, 80), 0.5, np.float32))
    assert pred.labels is None and pred.normals is None and pred.depth.shape == (1, 64, 80)
    seg = build_model("realtime", num_classes=3, decoder_channels=16, head_channels=8)
    with pytest.raises(ValueError, match="no default class names for 3"):
        export_onnx(seg, tmp_path / "x", input_size=(64, 80))
    with pytest.raises(ValueError, match="2 class names"):
        export_onnx(seg, tmp_path / "x", input_size=(64, 80), class_names=["a", "b"])
    with pytest.raises(ValueError, match="unknown metadata field"):
        export_onnx(model, tmp_path / "y", input_size=(64, 80), metadata_overrides={"colour": 1})


def test_cli_exports_lightning_checkpoint(tmp_path, capsys):
    model = build_model(
        "realtime", tasks=["depth", "normals"], decoder_channels=16, head_channels=8
    )
    ckpt = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": {"model." + k: v for k, v in model.state_dict().items()},
            "hyper_parameters": {"model": {"name": "realtime", **model.config()}},
            "epoch": 3,
        },
        ckpt,
    )
    assert torch.equal(
        load_checkpoint_model(ckpt).encoder.features[0][0].weight,
        model.encoder.features[0][0].weight,
    )
    assert (
        main(
            [
                "--checkpoint",
                str(ckpt),
                "--out",
                str(tmp_path / "e"),
                "--height",
                "64",
                "--width",
                "96",
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "e" / "metadata.json").read_text())
    assert meta["outputs"] == ["depth", "normals"] and meta["input_width"] == 96
    assert meta["training"]["checkpoint"] == str(ckpt)
    # the exported model.pt (or its directory) is itself accepted
    again = load_checkpoint_model(tmp_path / "e")
    assert again.tasks == ("depth", "normals") and again.decoder_channels == 16
    torch.save({"weights": 1}, tmp_path / "bad.ckpt")
    assert main(["--checkpoint", str(tmp_path / "bad.ckpt"), "--out", str(tmp_path / "g")]) == 1
    assert "bad.ckpt: neither a model.pt" in capsys.readouterr().err


def test_cli_reexport_keeps_the_canonical_focal_and_input_size(exported, tmp_path, caplog):
    """Re-exporting an exported model (its directory or model.pt) keeps its canonical focal
    (the runtime's per-camera depth rescale) and, unless given, its input size; a size given
    on the command line changes the input only (the focal is in pixels at any input size)."""
    _, out, _, _ = exported
    assert main(["--checkpoint", str(out), "--out", str(tmp_path / "same")]) == 0
    meta = json.loads((tmp_path / "same" / "metadata.json").read_text())
    assert meta["canonical_focal"] == 130.0
    assert (meta["input_height"], meta["input_width"]) == (H, W)
    args = ["--checkpoint", str(out / "model.pt"), "--out", str(tmp_path / "big")]
    assert main([*args, "--height", "240", "--width", "320"]) == 0
    meta = json.loads((tmp_path / "big" / "metadata.json").read_text())
    assert meta["canonical_focal"] == 130.0 and meta["input_width"] == 320
    assert "no canonical focal" not in caplog.text


def test_cli_reads_a_run_checkpoint_s_config_and_warns_without_one(tmp_path, caplog):
    """A Lightning checkpoint in <run_dir>/checkpoints/ takes input_size and
    data.canonical_focal from the run's config.yaml; a bare checkpoint exports without a
    canonical focal and says so."""
    import yaml

    from joint_perception.models.serialization import checkpoint_context

    model = build_model("realtime", tasks=["depth"], decoder_channels=16, head_channels=8)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    hp = {"model": {"name": "realtime", **model.config()}}
    torch.save(
        {
            "state_dict": {"model." + k: v for k, v in model.state_dict().items()},
            "hyper_parameters": hp,
        },
        ckpt,
    )
    cfg = {"input_size": [96, 128], "data": {"canonical_focal": 77.5}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    ctx = checkpoint_context(ckpt)
    assert (ctx.input_size, ctx.canonical_focal, ctx.source) == (
        (96, 128),
        77.5,
        run / "config.yaml",
    )
    assert main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "e")]) == 0
    meta = json.loads((tmp_path / "e" / "metadata.json").read_text())
    assert meta["canonical_focal"] == 77.5
    assert (meta["input_height"], meta["input_width"]) == (96, 128)

    bare = tmp_path / "bare.ckpt"
    bare.write_bytes(ckpt.read_bytes())
    assert checkpoint_context(bare) == type(ctx)()
    assert main(["--checkpoint", str(bare), "--out", str(tmp_path / "b")]) == 0
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    assert meta["canonical_focal"] is None and meta["input_width"] == 320
    assert "no canonical focal length found beside" in caplog.text
    (run / "config.yaml").write_text("input_size: [96, 128\n")
    with pytest.raises(ValueError, match="config.yaml: not readable YAML"):
        checkpoint_context(ckpt)


def test_evaluate_a_model_pt_with_its_canonical_focal(exported):
    """evaluate's checkpoint path reads model.pt's metadata.json: the same depth as the
    exported graph for a camera with another focal length (was: no rescale)."""
    from joint_perception.evaluation.evaluate import load_model

    _, out, _, _ = exported
    rgb = np.random.default_rng(0).integers(0, 255, (H, W, 3), np.uint8)
    K = np.array([[260.0, 0, W / 2], [0, 260.0, H / 2], [0, 0, 1]])
    torch_depth = load_model(out / "model.pt").run(rgb, K, want=("depth",)).depth
    onnx_depth = load_model(out, "onnxruntime", intra_op_threads=1).run(rgb, K, want=("depth",))
    np.testing.assert_allclose(torch_depth, onnx_depth.depth, rtol=1e-4, atol=1e-4)


def test_cli_refuses_an_output_path_that_is_a_file(exported, tmp_path, capsys):
    _, out, _, _ = exported
    afile = tmp_path / "afile"
    afile.write_text("kept")
    assert main(["--checkpoint", str(out), "--out", str(afile)]) == 1
    assert "exists and is not a directory" in capsys.readouterr().err
    assert afile.read_text() == "kept"
