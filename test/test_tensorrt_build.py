"""TensorRT build: options, the trtexec line, CLI wiring and its clear failure without TensorRT.

The real build runs only where ``tensorrt`` imports and a CUDA GPU is visible.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from joint_perception.export import export_engine
from joint_perception.export.export_engine import build_engine_with_gate, main
from joint_perception.io_utils import sha256_file
from joint_perception.runtime import tensorrt_engine
from joint_perception.runtime.engine_cache import EngineCache, EngineKey
from joint_perception.runtime.onnx_precision import onnx_precision
from joint_perception.runtime.tensorrt_engine import (
    BuildOptions,
    derived_onnx_path,
    trtexec_command,
)

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
SIZE = (64, 80)


def test_trtexec_line_default_fp16_is_strongly_typed():
    line = trtexec_command("c/onnx/abc.fp16.onnx", "/tmp/e.engine", BuildOptions())
    assert line == (
        "trtexec --onnx=c/onnx/abc.fp16.onnx --stronglyTyped --saveEngine=/tmp/e.engine "
        "--memPoolSize=workspace:1024M --skipInference"
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
    line = trtexec_command("m.int8.onnx", "m.engine", opts)
    assert line == (
        "trtexec --onnx=m.int8.onnx --stronglyTyped --saveEngine=m.engine "
        "--memPoolSize=workspace:512M --minShapes=image:1x3x240x320 --optShapes=image:1x3x480x640 --maxShapes=image:1x3x480x640 "
        "'--timingCacheFile=/c/timing cache.bin' --useDLACore=1 --allowGPUFallback --versionCompatible "
        "--hardwareCompatibilityLevel=ampere+ --builderOptimizationLevel=5 --skipInference"
    )
    # removed from trtexec 11, dropped with --stronglyTyped by trtexec 10: never emitted
    for precision in ("fp32", "fp16", "int8"):
        line = trtexec_command("m.onnx", "m.engine", BuildOptions(precision=precision))
        assert "--stronglyTyped" in line
        assert not {"--fp16", "--int8", "--best", "--bf16"} & set(line.split())


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
    fp16_graph = derived_onnx_path(tmp_path, sha256_file(tiny_model_dir / "model.onnx"), "fp16")
    assert (
        f"trtexec --onnx={fp16_graph} --stronglyTyped --saveEngine={tmp_path / 'fp16-1x3x64x80.engine'} "
        "--memPoolSize=workspace:256M --skipInference"
    ) in out
    assert onnx_precision(fp16_graph) == "fp16"  # written, so the printed line runs as it is


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
        tensorrt_engine.build_engine(tiny_model_dir / "model.onnx", BuildOptions("fp32"))
    # only the finished FP16 graph the printed trtexec line names: no engine, no temporary file
    fp16_graph = derived_onnx_path(tmp_path, sha256_file(tiny_model_dir / "model.onnx"), "fp16")
    assert sorted(tmp_path.rglob("*")) == [fp16_graph.parent, fp16_graph]


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


# ------------------------------------------------ the build path against fake TensorRT releases
# test/fake_tensorrt.py imitates the bindings of each supported release; every name it defines
# is checked against the real wheels in test_tensorrt_api_surface.py.

FAKE_RELEASES = ["10.3.0", "10.13.0.35", "11.4.0.106"]


@pytest.fixture
def fake_trt(request, monkeypatch):
    from fake_tensorrt import make_fake_tensorrt

    trt = make_fake_tensorrt(request.param)
    monkeypatch.setattr(tensorrt_engine, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(export_engine, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(tensorrt_engine, "gpu_identity", lambda device=0: ("Fake GPU", "8.7"))
    monkeypatch.setattr(tensorrt_engine, "_TRT_LOGGER", None)  # one logger per fake module
    return trt


def _key(model_dir, precision, trt):
    sha = sha256_file(model_dir / "model.onnx")
    return EngineKey(sha, trt.__version__, "Fake GPU", "8.7", precision, (1, 3, *SIZE))


@pytest.mark.parametrize("fake_trt", FAKE_RELEASES, indirect=True)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_strongly_typed_build_from_the_precisions_graph(
    fake_trt, precision, tiny_model_dir, tmp_path
):
    cache = EngineCache(tmp_path / "engines")
    opts = BuildOptions(precision, workspace_mb=64, timing_cache=str(tmp_path / "timing.cache"))
    entry = tensorrt_engine.build_and_cache(
        tiny_model_dir / "model.onnx", _key(tiny_model_dir, precision, fake_trt), opts, cache
    )
    seen = fake_trt.record
    # strongly typed: 1 << STRONGLY_TYPED, whose value is 1 in 10.x and 0 in 11.x
    assert seen.network_flags == [1 if fake_trt.__version__.startswith("11.") else 2]
    # the precision comes from the graph; no builder precision flag is set
    [(parsed, graph_precision)] = seen.parsed
    assert graph_precision == precision and seen.config_flags == []
    if precision == "fp16":
        sha = sha256_file(tiny_model_dir / "model.onnx")
        assert parsed == str(derived_onnx_path(cache.directory, sha, "fp16"))
    assert seen.settings == {"workspace": 64 << 20}
    assert seen.phases == ["Building engine", "Tactic selection"]  # progress monitor ran
    assert (tmp_path / "timing.cache").read_bytes() == b"timing"
    assert entry.read_bytes() == f"fake engine: {precision}, flags {seen.network_flags[0]}".encode()
    assert entry.metadata["network"] == "strongly typed"
    assert entry.metadata["built_from"] == parsed
    assert EngineCache(tmp_path / "engines").lookup(entry.key).hit


@pytest.mark.parametrize("fake_trt", FAKE_RELEASES, indirect=True)
def test_build_options_on_each_release(fake_trt, tiny_model_dir, tmp_path):
    opts = BuildOptions(
        "fp16",
        dla_core=1,
        version_compatible=True,
        hardware_compatibility="same_compute_capability",
        builder_optimization_level=4,
        min_shape=(1, 3, *SIZE),
        opt_shape=(1, 3, *SIZE),
        max_shape=(1, 3, *SIZE),
    )
    graph = tensorrt_engine.prepare_onnx(tiny_model_dir / "model.onnx", "fp16", tmp_path)
    if fake_trt.__version__.startswith("10.3."):  # the level exists from 10.9 on
        with pytest.raises(tensorrt_engine.EngineBuildError, match="no SAME_COMPUTE_CAPABILITY"):
            tensorrt_engine.build_engine(graph, opts)
        return
    assert tensorrt_engine.build_engine(graph, opts).startswith(b"fake engine: fp16")
    seen = fake_trt.record
    assert seen.config_flags == ["GPU_FALLBACK", "VERSION_COMPATIBLE"]
    assert seen.settings["default_device_type"] == "DLA" and seen.settings["DLA_core"] == 1
    assert seen.settings["hardware_compatibility_level"] == "SAME_COMPUTE_CAPABILITY"
    assert seen.settings["builder_optimization_level"] == 4
    assert seen.settings["profile"] == ("image", (1, 3, *SIZE), (1, 3, *SIZE), (1, 3, *SIZE))


@pytest.mark.parametrize("fake_trt", ["11.4.0.106"], indirect=True)
def test_int8_builds_from_its_qdq_graph_only(fake_trt, tiny_model_dir, tmp_path):
    from joint_perception.export.calibration import CalibrationFrames
    from joint_perception.export.quantize import quantize_qdq

    onnx_path = tiny_model_dir / "model.onnx"
    cache = EngineCache(tmp_path)
    key = _key(tiny_model_dir, "int8", fake_trt)
    with pytest.raises(ValueError, match="Q/DQ graph quantised on real calibration frames"):
        tensorrt_engine.build_and_cache(onnx_path, key, BuildOptions("int8"), cache)
    # an FP32 graph never becomes an "int8" (or "fp16") engine silently
    with pytest.raises(tensorrt_engine.EngineBuildError, match="is an fp32 graph but an int8"):
        tensorrt_engine.build_and_cache(onnx_path, key, BuildOptions("int8"), cache, onnx_path)
    with pytest.raises(ValueError, match="key is for int8, build options for fp16"):
        tensorrt_engine.build_and_cache(onnx_path, key, BuildOptions("fp16"), cache)
    frames = CalibrationFrames.random(SIZE, n=4, allow_random=True)  # the build path only
    qdq = quantize_qdq(onnx_path, tmp_path / "m.int8.onnx", frames, method="onnxruntime")
    entry = tensorrt_engine.build_and_cache(onnx_path, key, BuildOptions("int8"), cache, qdq)
    assert fake_trt.record.parsed == [(str(qdq), "int8")] and fake_trt.record.config_flags == []
    assert entry.key.precision == "int8"


def test_tensorrt_version_floor():
    assert tensorrt_engine.tensorrt_version_problem("10.3.0") is None
    assert tensorrt_engine.tensorrt_version_problem("11.4.0.106") is None
    assert tensorrt_engine.tensorrt_version_problem("10.16.1.11") is None
    problem = tensorrt_engine.tensorrt_version_problem("10.2.0.19")
    assert problem.startswith("TensorRT 10.2.0.19 is older than 10.3 (JetPack 6.1 / 6.2")
    assert "supported: 10.3, 10.13, 11.4" in problem
    assert tensorrt_engine.tensorrt_version_problem("8.6.1") is not None


@pytest.mark.parametrize("fake_trt", ["10.13.0.35"], indirect=True)
def test_export_engine_best_and_the_backend_agree_on_the_engine(
    fake_trt, tiny_model_dir, tmp_path, capsys
):
    """``export_engine --precision best`` and the node's backend choose through one function
    over the same cache keys and files (the gate needs a GPU; it is off here)."""
    from joint_perception.metadata import load_metadata
    from joint_perception.runtime.engine_select import latency_target_ms
    from joint_perception.runtime.tensorrt_backend import choose_engine

    cache_dir = tmp_path / "engines"
    args = ["--model", str(tiny_model_dir), "--cache-dir", str(cache_dir), "--no-gate"]
    assert main([*args, "--precision", "best"]) == 1  # built, but none gated
    out = capsys.readouterr().out
    built = {p: _key(tiny_model_dir, p, fake_trt) for p in ("fp32", "fp16")}
    for precision, key in built.items():
        assert f"engine ({precision}): {cache_dir / key.filename}" in out
    assert "precision best -> fp16: best: no cached engine is gated and timed" in out
    assert "int8" not in {e.key.precision for e in EngineCache(cache_dir).entries()}

    # what export_engine records with a GPU: gate passed, median latency per frame
    cache = EngineCache(cache_dir)
    for precision, ms in (("fp32", 9.0), ("fp16", 4.0)):
        cache.update_metadata(
            built[precision], accuracy_gate={"passed": True}, latency={"median_ms": ms}
        )
    meta = load_metadata(tiny_model_dir)
    sha = sha256_file(tiny_model_dir / "model.onnx")
    shape = (1, 3, meta.input_height, meta.input_width)
    for target, expected in ((20.0, "fp32"), (5.0, "fp16")):
        choice, key = choose_engine(sha, shape, "best", cache, target)
        assert (choice.precision, key) == (expected, built[expected])
        assert choice.entry.engine_path == cache_dir / built[expected].filename
    assert latency_target_ms(meta) == 20.0
    assert main([*args, "--precision", "best", "--latency-target-ms", "5"]) == 0  # cached now
    assert "precision best -> fp16: best: fp16 (gated, 4.00 ms <= 5 ms)" in capsys.readouterr().out


def test_measure_latency_times_single_frames(tiny_model_dir):
    from joint_perception.export.export_engine import measure_latency
    from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(tiny_model_dir, providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(0).random((5, 3, *SIZE), dtype=np.float32)
    got = measure_latency(backend, frames, warmup=1)
    assert got["frames"] == 5 and 0 < got["median_ms"] <= got["p90_ms"]
    assert got["what"].startswith("onnxruntime CPUExecutionProvider")
    with pytest.raises(ValueError, match="no frames"):
        measure_latency(backend, frames[:0])
