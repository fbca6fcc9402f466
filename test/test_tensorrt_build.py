"""TensorRT build: options, the trtexec line, CLI wiring and its clear failure without TensorRT.

The real build runs only where ``tensorrt`` imports and a CUDA GPU is visible.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from joint_perception.export.export_engine import build_engine_with_gate, main
from joint_perception.runtime import tensorrt_engine
from joint_perception.runtime.engine_cache import EngineCache, EngineKey
from joint_perception.runtime.tensorrt_engine import BuildOptions, trtexec_command

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
SIZE = (64, 80)


def test_trtexec_line_default_fp16():
    line = trtexec_command("models/realtime/model.onnx", "/tmp/e.engine", BuildOptions())
    assert line == (
        "trtexec --onnx=models/realtime/model.onnx --saveEngine=/tmp/e.engine "
        "--memPoolSize=workspace:1024M --fp16 --skipInference"
    )


def test_trtexec_line_all_options():
    opts = BuildOptions(
        precision="int8",
        workspace_mb=512,
        timing_cache="/c/timing cache.bin",
        dla_core=1,
        version_compatible=True,
        hardware_compatibility="ampere_plus",
        min_shape=(1, 3, 240, 320),
        opt_shape=(1, 3, 480, 640),
        max_shape=(1, 3, 480, 640),
        builder_optimization_level=5,
    )
    line = trtexec_command("m.onnx", "m.engine", opts)
    assert line == (
        "trtexec --onnx=m.onnx --saveEngine=m.engine --memPoolSize=workspace:512M --fp16 --int8 "
        "--minShapes=image:1x3x240x320 --optShapes=image:1x3x480x640 --maxShapes=image:1x3x480x640 "
        "'--timingCacheFile=/c/timing cache.bin' --useDLACore=1 --allowGPUFallback --versionCompatible "
        "--hardwareCompatibilityLevel=ampere+ --builderOptimizationLevel=5 --skipInference"
    )
    fp32 = trtexec_command("m.onnx", "m.engine", BuildOptions(precision="fp32", workspace_mb=64))
    assert "--fp16" not in fp32 and "--int8" not in fp32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"precision": "bf16"}, "precision"),
        ({"workspace_mb": 0}, "workspace_mb"),
        ({"dla_core": 0, "precision": "fp32"}, "DLA runs FP16 or INT8"),
        ({"hardware_compatibility": "hopper"}, "hardware_compatibility"),
        ({"builder_optimization_level": 6}, "0..5"),
        ({"min_shape": (1, 3, 8, 8)}, "all of min_shape"),
        (
            {"min_shape": (1, 3, 9, 8), "opt_shape": (1, 3, 8, 8), "max_shape": (1, 3, 8, 8)},
            "min <= opt <= max",
        ),
    ],
)
def test_build_options_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BuildOptions(**kwargs)


def test_cli_print_trtexec_works_without_tensorrt(tiny_model_dir, tmp_path, capsys):
    rc = main(
        [
            "--model",
            str(tiny_model_dir),
            "--precision",
            "fp16",
            "--cache-dir",
            str(tmp_path),
            "--workspace-mb",
            "256",
            "--print-trtexec",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "opset 17" in out and "OK for TensorRT 10" in out
    assert (
        f"trtexec --onnx={tiny_model_dir / 'model.onnx'} --saveEngine={tmp_path / 'fp16-1x3x64x80.engine'} "
        "--memPoolSize=workspace:256M --fp16 --skipInference"
    ) in out


@pytest.mark.skipif(
    HAVE_TRT, reason="checks the failure without TensorRT; tensorrt is installed here"
)
def test_cli_fails_clearly_without_tensorrt(tiny_model_dir, tmp_path, capsys):
    rc = main(["--model", str(tiny_model_dir), "--cache-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert rc == 2
    assert "trtexec --onnx=" in captured.out  # checks and trtexec line came first
    assert "cannot build here: TensorRT is not installed" in captured.err
    with pytest.raises(tensorrt_engine.TensorRTUnavailable, match="TensorRT is not installed"):
        tensorrt_engine.build_engine(tiny_model_dir / "model.onnx", BuildOptions())
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_cli_errors_for_missing_or_replaced_model(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([])
    assert "--model is required" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "nothing")]) == 1
    assert "model metadata not found" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metadata.json").write_text((tiny_model_dir / "metadata.json").read_text())
    (bad / "model.onnx").write_bytes((tiny_model_dir / "model.onnx").read_bytes() + b"\0")
    assert main(["--model", str(bad), "--print-trtexec"]) == 1
    assert "does not match metadata" in capsys.readouterr().err
    assert main(["--model", str(tiny_model_dir), "--dla-core", "0", "--precision", "fp32"]) == 1
    assert "DLA runs FP16 or INT8" in capsys.readouterr().err
    assert (
        main(
            [
                "--model",
                str(tiny_model_dir),
                "--precision",
                "int8",
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
        == 1
    )
    assert "int8 needs real calibration frames" in capsys.readouterr().err


def test_cli_list_shows_valid_and_invalid_engines(tmp_path, capsys):
    cache = EngineCache(tmp_path)
    key = EngineKey("a" * 64, "10.7.0", "NVIDIA Orin", "8.7", "fp16", (1, 3, 64, 80))
    cache.store(key, b"engine" * 100, {"accuracy_gate": {"passed": True}})
    broken = cache.store(
        EngineKey("b" * 64, "10.7.0", "NVIDIA Orin", "8.7", "fp32", (1, 3, 64, 80)), b"x" * 50
    )
    broken.engine_path.write_bytes(b"x" * 10)
    assert main(["--cache-dir", str(tmp_path), "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(key.filename) and "gate=True" in line for line in out)
    assert any(
        line.startswith(broken.engine_path.name) and "INVALID: size mismatch" in line
        for line in out
    )


class _ParserError:
    """TensorRT's IParserError surface (desc/node/node_name/node_operator/code)."""

    def __init__(self, node, name, op, desc):
        self._v = (node, name, op, desc)

    def node(self):
        return self._v[0]

    def node_name(self):
        return self._v[1]

    def node_operator(self):
        return self._v[2]

    def desc(self):
        return self._v[3]

    def code(self):
        return "UNSUPPORTED_NODE"


class _Parser:
    def __init__(self, errors):
        self._errors = errors
        self.num_errors = len(errors)

    def get_error(self, i):
        return self._errors[i]


def test_parser_errors_are_reported_per_node():
    parser = _Parser(
        [
            _ParserError(12, "/head/Unique", "Unique", "No importer registered for op: Unique"),
            _ParserError(40, "", "", "Assertion failed"),
        ]
    )
    assert tensorrt_engine.parser_errors(parser) == [
        "node 12 '/head/Unique' (Unique): No importer registered for op: Unique [code UNSUPPORTED_NODE]",
        "node 40: Assertion failed [code UNSUPPORTED_NODE]",
    ]


# ------------------------------------------------------------ needs TensorRT 10 and a CUDA GPU


@pytest.fixture
def trt_gpu():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed here")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but no CUDA GPU is visible")


def test_build_engine_with_gate_fp16_records_gate(trt_gpu, tiny_model_dir, tmp_path, shared_data):
    from joint_perception.export.calibration import CalibrationFrames

    frames = CalibrationFrames.from_bag(shared_data / "bags" / "nyuv2_test3_sqlite3", SIZE)
    opts = BuildOptions(
        precision="fp16", workspace_mb=256, timing_cache=str(tmp_path / "timing.cache")
    )
    entry = build_engine_with_gate(tiny_model_dir, opts, tmp_path / "engines", gate_frames=frames)
    gate = entry.metadata["accuracy_gate"]
    assert gate["passed"] is True
    side = json.loads(entry.sidecar_path.read_text())
    assert side["metadata"]["accuracy_gate"]["metrics"]["frames"] == 3.0
    assert (tmp_path / "timing.cache").stat().st_size > 0
    again = build_engine_with_gate(tiny_model_dir, opts, tmp_path / "engines", gate_frames=frames)
    assert again.sha256 == entry.sha256  # served from the cache


def test_build_int8_from_real_bag(trt_gpu, tiny_model_dir, tmp_path, shared_data):
    rc = main(
        [
            "--model",
            str(tiny_model_dir),
            "--precision",
            "int8",
            "--cache-dir",
            str(tmp_path),
            "--calib-bag",
            str(shared_data / "bags" / "nyuv2_test10_mcap"),
            "--calib-frames",
            "10",
            "--workspace-mb",
            "256",
            "--gate-policy",
            "warn",
        ]
    )
    assert rc == 0
    [entry] = EngineCache(tmp_path).entries()
    assert entry.key.precision == "int8"
    assert entry.metadata["calibration"]["frames"] == 10
    assert np.isfinite(entry.metadata["accuracy_gate"]["metrics"]["depth_abs_rel"])
