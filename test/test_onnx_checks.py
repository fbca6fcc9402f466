"""ONNX hygiene for TensorRT: a real exported model passes, bad graphs are flagged."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from joint_perception.export.onnx_checks import (
    TRT10_SUPPORTED_OPS,
    check_onnx,
    fold_constants,
    make_static,
)


def _save(tmp_path, nodes, inputs, outputs, opset=17, name="g.onnx", domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=imports)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_exported_model_passes(tiny_model_dir):
    report = check_onnx(tiny_model_dir / "model.onnx")
    assert report.ok, report.summary()
    assert report.opset == 17
    assert report.inputs == {"image": [1, 3, 64, 80]}
    assert report.outputs["labels"] == [1, 64, 80]
    assert report.outputs["normals"] == [1, 3, 64, 80]
    assert report.static_input
    assert report.unsupported_ops == []
    assert report.op_counts["Conv"] > 10
    assert set(report.op_counts) <= TRT10_SUPPORTED_OPS
    assert 0 < report.initializer_bytes < 4 << 20
    assert "OK for TensorRT 10" in report.summary()


def test_unsupported_and_foreign_domain_ops_are_flagged(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Unique", ["r"], ["u"]),
        helper.make_node("Gelu", ["r"], ["gelu"], domain="com.microsoft"),
    ]
    path = _save(
        tmp_path,
        nodes,
        [_vi("x", [4])],
        [_vi("u", None), _vi("gelu", [4])],
        domains=["com.microsoft"],
    )
    report = check_onnx(path)
    assert not report.ok
    assert report.unsupported_ops == ["Unique", "com.microsoft::Gelu"]
    assert any(
        "operators TensorRT 10 cannot parse: Unique (x1), com.microsoft::Gelu (x1)" in e
        for e in report.errors
    )


def test_dynamic_input_flagged_then_make_static_fixes_it(tmp_path):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], np.ones(6, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["y"])],
        "g",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        [w],
    )
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    report = check_onnx(path)
    assert not report.static_input and not report.ok
    assert any("dynamic shape [None, 3, None, None]" in e for e in report.errors)

    fixed = make_static(path, tmp_path / "static.onnx", (1, 3, 8, 10))
    report = check_onnx(fixed)
    assert report.ok, report.summary()
    assert report.inputs == {"image": [1, 3, 8, 10]}
    assert report.outputs == {"y": [1, 2, 8, 10]}
    with pytest.raises(ValueError, match="rank 4"):
        make_static(path, tmp_path / "bad.onnx", (1, 3, 8))
    with pytest.raises(ValueError, match="dim 1 is fixed at 3"):
        make_static(path, tmp_path / "bad.onnx", (1, 4, 8, 10))


def test_opset_out_of_range_and_checker_errors(tmp_path):
    relu = [helper.make_node("Relu", ["x"], ["y"])]
    old = _save(tmp_path, relu, [_vi("x", [2])], [_vi("y", [2])], opset=8, name="old.onnx")
    assert any("opset 8 outside TensorRT 10's range 9..20" in e for e in check_onnx(old).errors)
    dangling = [helper.make_node("Add", ["x", "missing"], ["y"])]
    bad = _save(tmp_path, dangling, [_vi("x", [2])], [_vi("y", [2])], name="bad.onnx")
    assert any(e.startswith("onnx.checker:") for e in check_onnx(bad).errors)


def test_unreadable_files_raise_with_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        check_onnx(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 definitely not protobuf \xff" * 3)
    with pytest.raises(ValueError, match="junk.onnx"):
        check_onnx(junk)


def test_fold_constants_shrinks_graph_and_keeps_outputs(tiny_model_dir, tmp_path):
    src = tiny_model_dir / "model.onnx"
    out = fold_constants(src, tmp_path / "folded.onnx")
    before, after = check_onnx(src), check_onnx(out)
    assert after.ok
    assert sum(after.op_counts.values()) < sum(before.op_counts.values())
    assert after.op_counts.get("Constant", 0) == 0
    x = np.random.default_rng(0).random((1, 3, 64, 80), dtype=np.float32)
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, atol=1e-5)


def test_a_truncated_model_is_a_clear_error_in_every_reader(tiny_model_dir, tmp_path, capsys):
    """A model.onnx cut in half, with no onnx_sha256 in its metadata to catch it first: the
    ONNX Runtime backend and export_engine name the file (no protobuf traceback)."""
    import json
    import shutil

    from joint_perception.export.export_engine import main as export_engine
    from joint_perception.onnx_io import load_onnx
    from joint_perception.runtime.onnxruntime_backend import OnnxRuntimeBackend

    bad = tmp_path / "half"
    shutil.copytree(tiny_model_dir, bad)
    data = (bad / "model.onnx").read_bytes()
    (bad / "model.onnx").write_bytes(data[: len(data) // 2])
    meta = json.loads((bad / "metadata.json").read_text())
    meta.pop("onnx_sha256", None)
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"model.onnx: not a readable ONNX model"):
        load_onnx(bad / "model.onnx")
    with pytest.raises(ValueError, match=r"model.onnx: not a readable ONNX model"):
        OnnxRuntimeBackend(bad, intra_op_threads=1)
    assert export_engine(["--model", str(bad), "--print-trtexec"]) == 1
    err = capsys.readouterr().err
    assert "not a readable ONNX model" in err and "Traceback" not in err
