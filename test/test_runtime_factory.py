"""Backend selection: auto order, reasons, explicit backends, fallback, model lookup.

Runs on this CPU-only machine: TensorRT and CUDA are absent, so ``auto`` must land on ONNX
Runtime and say why; where a GPU exists the expectations adapt (and are checked for real).
"""

import importlib.util

import numpy as np
import pytest

from joint_perception.export.onnx_export import export_onnx
from joint_perception.models import build_model
from joint_perception.runtime import BackendUnavailable, create_backend, factory, resolve_model_path

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _has_cuda():
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("factory") / "tiny"
    model = build_model(
        "realtime", tasks=["depth", "segmentation"], decoder_channels=16, head_channels=8
    )
    export_onnx(model, out, input_size=(32, 48))
    return out


@pytest.mark.skipif(
    HAS_TRT or _has_cuda(), reason="expectation for a machine without TensorRT/CUDA"
)
def test_auto_picks_onnxruntime_here_with_reason(model_dir):
    b = create_backend(model_dir)
    assert b.name == "onnxruntime" and b.device == "cpu"
    assert b.reason == (
        "auto: tensorrt not importable (No module named 'tensorrt'); torch has no CUDA device; "
        "using onnxruntime (CPUExecutionProvider)"
    )
    pred = b.predict(np.zeros((1, 3, 32, 48), np.float32))
    assert pred.depth.shape == (1, 32, 48) and pred.labels.shape == (1, 32, 48)
    assert pred.normals is None


@pytest.mark.skipif(
    HAS_TRT or _has_cuda(), reason="expectation for a machine without TensorRT/CUDA"
)
def test_explicit_unavailable_backend_raises_or_falls_back(model_dir, caplog):
    with pytest.raises(
        BackendUnavailable, match="backend 'tensorrt' unavailable: tensorrt not importable"
    ):
        create_backend(model_dir, backend="tensorrt", fallback=False)
    with pytest.raises(BackendUnavailable, match="torch has no CUDA device"):
        create_backend(model_dir, backend="torch", device="cuda", fallback=False)
    with caplog.at_level("WARNING"):
        b = create_backend(model_dir, backend="tensorrt", fallback=True, intra_op_threads=1)
    assert "falling back" in caplog.text
    assert b.name == "onnxruntime"
    assert b.reason.startswith("backend=tensorrt: tensorrt not importable")
    assert b.reason.endswith("torch has no CUDA device; using onnxruntime (CPUExecutionProvider)")


def test_explicit_torch_runs_on_cpu_and_matches_onnxruntime(model_dir):
    ort_b = create_backend(model_dir, backend="onnxruntime", device="cpu")
    assert ort_b.reason == "backend=onnxruntime: using onnxruntime (CPUExecutionProvider)"
    torch_b = create_backend(
        model_dir,
        backend="torch",
        device="cpu",
        fallback=False,
        channels_last=False,
        cuda_graphs=False,
    )
    assert torch_b.name == "torch" and torch_b.reason.startswith("backend=torch: using PyTorch")
    x = np.random.default_rng(0).random((1, 3, 32, 48), dtype=np.float32)
    a, b = ort_b.predict(x), torch_b.predict(x)
    assert np.abs(a.depth - b.depth).max() < 1e-4
    assert np.mean(a.labels == b.labels) > 0.99


def test_auto_with_cpu_device_uses_onnxruntime(model_dir):
    b = create_backend(model_dir, device="cpu")
    assert b.name == "onnxruntime"
    assert b.reason == (
        "auto: device=cpu: tensorrt and torch skipped; using onnxruntime (CPUExecutionProvider)"
    )


def test_bad_arguments(model_dir, tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        create_backend(model_dir, backend="openvino")
    with pytest.raises(ValueError, match=r"unknown backend option\(s\) \['turbo'\]"):
        create_backend(model_dir, turbo=True)
    with pytest.raises(FileNotFoundError, match="'no_such_model' not found; searched"):
        create_backend("no_such_model")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="not an .onnx model"):
        resolve_model_path(tmp_path / "notes.txt")


def test_resolve_model_path(model_dir, tmp_path, monkeypatch):
    assert resolve_model_path(model_dir) == model_dir.resolve()
    assert resolve_model_path(model_dir / "model.onnx") == (model_dir / "model.onnx").resolve()
    # a shipped model by name from an installed share/ tree (colcon layout)
    share = tmp_path / "install" / "share" / "joint_perception" / "models" / "tiny"
    share.mkdir(parents=True)
    for f in ("model.onnx", "metadata.json"):
        (share / f).write_bytes((model_dir / f).read_bytes())
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install"))
    monkeypatch.setattr(factory, "_repo_models_dir", lambda: tmp_path / "no_repo_models")
    assert resolve_model_path("tiny") == share
    assert create_backend("tiny").metadata.input_width == 48


def test_thread_defaults_follow_the_machine():
    from joint_perception.runtime import threads

    assert threads.default_intra_op_threads(1) == 1
    assert threads.default_intra_op_threads(2) == 1
    assert threads.default_intra_op_threads(8) is None  # the backend's own default
    assert threads.resolve_intra_op_threads(3, cores=2) == 3
    assert threads.resolve_intra_op_threads(0, cores=2) == 1
    with pytest.raises(ValueError, match="intra_op_threads"):
        threads.resolve_intra_op_threads(-1)
    before = threads.limit_opencv_threads(1)
    import cv2

    assert cv2.getNumThreads() == 1
    cv2.setNumThreads(before)


def test_thread_options_reach_onnxruntime_and_torch(model_dir, monkeypatch):
    import torch

    from joint_perception.runtime import threads

    ort_b = create_backend(
        model_dir, backend="onnxruntime", intra_op_threads=2, intra_op_spinning=True
    )
    assert (ort_b.intra_op_threads, ort_b.intra_op_spinning) == (2, True)
    assert "intra-op threads 2, spinning on" in ort_b.describe()
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    ort_default = create_backend(model_dir, backend="onnxruntime")
    assert (ort_default.intra_op_threads, ort_default.intra_op_spinning) == (1, False)
    assert set(factory.THREAD_OPTIONS) == {"intra_op_threads", "intra_op_spinning"}
    before = torch.get_num_threads()
    try:
        # the torch backend takes the thread count; spinning is ONNX Runtime's only
        t = create_backend(model_dir, backend="torch", device="cpu", **factory.THREAD_OPTIONS)
        assert t.name == "torch" and torch.get_num_threads() == 1 == t.intra_op_threads
        x = np.random.default_rng(0).random((1, 3, 32, 48), dtype=np.float32)
        np.testing.assert_allclose(
            t.predict(x).depth, ort_default.predict(x).depth, rtol=1e-4, atol=1e-4
        )
    finally:
        torch.set_num_threads(before)


def test_onnxruntime_runs_only_the_outputs_asked_for(model_dir):
    """``outputs=`` prunes the graph: the outputs kept are bit-identical to the full graph's,
    the others are None and their nodes are gone from the session (the confidence tail's
    ReduceSum/Exp), and a name the graph lacks is refused."""
    import onnx

    full = create_backend(model_dir, backend="onnxruntime")
    assert full.output_names == ["depth", "labels", "confidence"] and not full.pruned
    some = create_backend(model_dir, backend="onnxruntime", outputs=("labels", "depth"))
    assert some.pruned and some.output_names == ["depth", "labels"]  # graph order
    assert "outputs depth, labels" in some.describe()
    x = np.random.default_rng(1).random((1, 3, 32, 48), dtype=np.float32)
    a, b = full.predict(x), some.predict(x)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.confidence is not None and b.confidence is None
    from joint_perception.runtime.onnxruntime_backend import _subgraph

    ops = {n.op_type for n in onnx.load(str(model_dir / "model.onnx")).graph.node}
    kept = {
        n.op_type
        for n in onnx.load_from_string(
            _subgraph(
                onnx.load(str(model_dir / "model.onnx")), ["depth", "labels"]
            ).SerializeToString()
        ).graph.node
    }
    assert {"Exp", "ReduceSum"} <= ops and not {"Exp", "ReduceSum"} & kept
    same = create_backend(model_dir, backend="onnxruntime", outputs=full.output_names)
    assert not same.pruned
    # an output the model lacks (this one has no normals) is not computed, nothing else changes
    lacking = create_backend(model_dir, backend="onnxruntime", outputs=("depth", "normals"))
    assert lacking.output_names == ["depth"]
    for bad, why in ((("normals",), "none of the outputs"), ((), "none of the outputs"),
                     (("depth", "disparity"), "unknown network outputs")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            create_backend(model_dir, backend="onnxruntime", outputs=bad, fallback=False)


def test_pruned_onnxruntime_backend_builds_one_session_and_checks_the_whole_graph(
    model_dir, tmp_path, monkeypatch
):
    """A pruned (or rewritten) backend builds only that session (not the full one first), and
    the metadata's output list is still checked against the whole graph."""
    import json

    import onnxruntime as ort

    from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

    built = []

    class Counting(ort.InferenceSession):
        def __init__(self, *args, **kwargs):
            built.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", Counting)
    b = OnnxRuntimeBackend(model_dir, outputs=("depth",))
    assert b.pruned and b.output_names == ["depth"] and not b.rewrites
    assert len(built) == 1 and isinstance(built[0], bytes)  # the subgraph, serialised
    built.clear()
    b = OnnxRuntimeBackend(model_dir)
    assert not b.pruned and b.rewrites == 1  # runtime.onnx_rewrite's class tail
    assert len(built) == 1 and isinstance(built[0], bytes)
    # metadata claiming another output set is refused, pruned or not
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    meta = json.loads((model_dir / "metadata.json").read_text())
    meta["outputs"] = ["depth", "labels"]
    (bad / "metadata.json").write_text(json.dumps(meta))
    for outputs in (None, ("depth",)):
        with pytest.raises(ValueError, match="differ from metadata"):
            OnnxRuntimeBackend(bad, outputs=outputs)


def test_torch_backend_computes_only_the_outputs_asked_for(model_dir):
    """The torch backend takes the same ``outputs=`` (the node passes it to every backend):
    the deploy wrapper returns only those, equal to the full wrapper's."""
    full = create_backend(model_dir, backend="torch", device="cpu", fallback=False)
    some = create_backend(
        model_dir, backend="torch", device="cpu", fallback=False, outputs=("depth", "normals")
    )
    x = np.random.default_rng(2).random((1, 3, 32, 48), dtype=np.float32)
    a, b = full.predict(x), some.predict(x)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert a.labels is not None and b.labels is None and b.confidence is None
    with pytest.raises(ValueError, match="unknown network outputs"):
        create_backend(model_dir, backend="torch", device="cpu", fallback=False, outputs=("x",))
