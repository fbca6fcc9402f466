"""TFLite flatbuffer -> torch state_dict: ImageNet (and PASCAL DeepLab) initialisation.

TF-slim's MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018) and DeepLabV3 on it (Chen et al., "Rethinking Atrous Convolution for
Semantic Image Segmentation", arXiv:1706.05587, 2017) ship as TFLite files, e.g. the
``mobilenet_v2_1.0_224_quant.tflite`` (ImageNet, 1001 classes) and
``deeplabv3_mnv2_pascal_quant.tflite`` (PASCAL VOC, 21 classes) of google-coral/test_data.
This module reads such a file (the ``tflite`` package's generated schema bindings; no custom
flatbuffer parsing) and returns a torch state_dict with torchvision's MobileNetV2 names
(``features.N.conv...``), so the project's :class:`~joint_perception.models.backbones.MobileNetV2`
loads it directly (also through :func:`~joint_perception.models.backbones.load_pretrained`).

Conversion:

* weights: ``w = scale * (q - zero_point)`` (:func:`dequantize`, per tensor or per axis);
  int32 biases use ``scale = input_scale * weight_scale`` (what the integer kernels add them
  with); float files are read as they are.
* layouts: TFLite conv weights are OHWI, depthwise ``(1, H, W, C * M)``; torch wants OIHW and
  ``(C * M, 1, H, W)`` (:func:`conv_weight_to_torch`, :func:`depthwise_weight_to_torch`).
* batch norm: the files hold BN-folded convolutions (conv weight and bias, no BN). Each torch
  BN after a conv becomes an exact identity carrying the bias: weight 1, bias = conv bias,
  running_mean 0, running_var ``1 - eps`` (so ``(x - 0) / sqrt(var + eps) = x``). In eval
  mode the network is then the TF one; fine-tuning with BN in train mode re-normalises by
  batch statistics, so freeze the BNs (or expect a transient) when fine-tuning.
* mapping: the CONV_2D / DEPTHWISE_CONV_2D operators are taken in graph order and matched to
  the torch convs in module order; each must have the expected kind, weight shape and fused
  activation, and must read the previous conv's output (directly or through a residual ADD).
  Any mismatch raises a ``ValueError`` naming the file, operator and weight tensor.

Input normalisation: TF-slim feeds RGB as ``x = 2 p - 1`` with ``p`` in [0, 1]
(``image / 127.5 - 1``), i.e. mean 0.5 and std 0.5 in [0, 1] units (:data:`TF_SLIM_MEAN`,
:data:`TF_SLIM_STD`); the uint8 files quantise it with scale 1/128, zero point 128.
:func:`fold_input_normalization` rewrites the first conv for another normalisation (e.g. the
project's ImageNet mean/std). Stride-2 convs in TF pad ``"SAME"`` (bottom/right for even
sizes): build the backbone with ``tf_same_padding=True`` to reproduce TF exactly.

Needs the ``tflite`` and ``flatbuffers`` packages (``train`` extra) for reading files; the pure
helpers (:func:`dequantize`, layouts, folding) do not.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from joint_perception.models.mobilenet_v2 import MobileNetV2

__all__ = [
    "TF_SLIM_MEAN",
    "TF_SLIM_STD",
    "TFLiteTensor",
    "TFLiteOp",
    "TFLiteGraph",
    "DeepLabTFLiteInfo",
    "read_tflite",
    "dequantize",
    "conv_weight_to_torch",
    "depthwise_weight_to_torch",
    "mobilenet_v2_state_dict_from_tflite",
    "deeplabv3_mobilenet_v2_state_dict_from_tflite",
    "fold_input_normalization",
]

#: Per-channel RGB mean / std (in [0, 1] units) of TF-slim's input: ``(p - 0.5) / 0.5 = 2p - 1``.
TF_SLIM_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
TF_SLIM_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

_ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDING = {0: "SAME", 1: "VALID"}
_NP_DTYPE = {
    "FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32, "UINT8": np.uint8,
    "INT64": np.int64, "INT16": np.int16, "INT8": np.int8, "BOOL": np.bool_, "UINT16": np.uint16,
}  # fmt: skip
_CONV_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D")
# ops that pass a tensor through unchanged up to quantisation / a broadcast resize
_PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RESHAPE")


def _tflite():
    try:
        import tflite
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading .tflite files needs the 'tflite' and 'flatbuffers' packages "
            "(pip install 'joint_perception[train]' or pip install tflite flatbuffers)"
        ) from e
    return tflite


# --------------------------------------------------------------------------- pure helpers


def dequantize(
    q: np.ndarray,
    scale: float | Sequence[float] | np.ndarray,
    zero_point=0,
    axis: int | None = None,
) -> np.ndarray:
    """Affine dequantisation ``w = scale * (q - zero_point)`` (TFLite's scheme).

    Args:
        q: stored integers (uint8, int8, int32 ...) of any shape.
        scale: one scale (per tensor) or ``q.shape[axis]`` scales (per axis), real units per
            integer step.
        zero_point: one zero point or one per scale (integers).
        axis: the quantised dimension for per-axis scales (TFLite's ``quantized_dimension``:
            0 for conv weights OHWI, 3 for depthwise ``1HWC``); ignored for one scale.

    Returns:
        float32 array of ``q``'s shape (computed in float64, then rounded once).

    Raises:
        ValueError: several scales without ``axis``, or their count is not ``q.shape[axis]``,
            or zero points and scales differ in count.
    """
    q = np.asarray(q)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    zp = np.asarray(zero_point, dtype=np.int64).reshape(-1)
    if zp.size == 1 and scale.size > 1:
        zp = np.repeat(zp, scale.size)
    if zp.size != scale.size:
        raise ValueError(f"{scale.size} scales but {zp.size} zero points")
    if scale.size == 1:
        return (scale[0] * (q.astype(np.float64) - zp[0])).astype(np.float32)
    if axis is None:
        raise ValueError(f"{scale.size} scales (per-axis quantisation) need the quantised axis")
    axis = axis % q.ndim
    if q.shape[axis] != scale.size:
        raise ValueError(
            f"{scale.size} scales for axis {axis} of length {q.shape[axis]} (shape {q.shape})"
        )
    shape = [1] * q.ndim
    shape[axis] = -1
    return (scale.reshape(shape) * (q.astype(np.float64) - zp.reshape(shape))).astype(np.float32)


def conv_weight_to_torch(w: np.ndarray) -> np.ndarray:
    """TFLite CONV_2D weights ``(O, H, W, I)`` -> torch ``(O, I, H, W)`` (``nn.Conv2d.weight``).

    Raises:
        ValueError: ``w`` is not 4-D.
    """
    w = np.asarray(w)
    if w.ndim != 4:
        raise ValueError(f"conv weights must be 4-D (O, H, W, I), got shape {w.shape}")
    return np.ascontiguousarray(w.transpose(0, 3, 1, 2))


def depthwise_weight_to_torch(w: np.ndarray) -> np.ndarray:
    """TFLite DEPTHWISE_CONV_2D weights ``(1, H, W, C * M)`` -> torch ``(C * M, 1, H, W)``.

    TFLite's output channel ``c * M + m`` (depth multiplier M) reads input channel ``c``, as
    torch's ``groups=C`` conv does, so only the axes move.

    Raises:
        ValueError: ``w`` is not 4-D with a leading 1.
    """
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[0] != 1:
        raise ValueError(f"depthwise weights must be (1, H, W, C*M), got shape {w.shape}")
    return np.ascontiguousarray(w.transpose(3, 0, 1, 2))


def fold_input_normalization(
    state_dict: Mapping[str, torch.Tensor],
    src_mean: Sequence[float],
    src_std: Sequence[float],
    dst_mean: Sequence[float],
    dst_std: Sequence[float],
    first_conv: str = "features.0.0",
    first_bn: str | None = "features.0.1",
) -> dict[str, torch.Tensor]:
    """Rewrite the first conv so the network takes another input normalisation.

    The weights expect ``x_src = (p - src_mean) / src_std`` (p: RGB in [0, 1]); the returned
    ones take ``x_dst = (p - dst_mean) / dst_std``. With ``x_src = a * x_dst + b``,
    ``a = dst_std / src_std``, ``b = (dst_mean - src_mean) / src_std`` (per channel), the conv
    weight is scaled by ``a`` along its input channels and the constant ``sum W * b`` is added
    to its output: to the conv bias if it has one, else by lowering the following BN's
    ``running_mean`` by it (exact for any BN). E.g. TF-slim [-1, 1] input
    (:data:`TF_SLIM_MEAN`, :data:`TF_SLIM_STD`) -> ImageNet mean (0.485, 0.456, 0.406) and std
    (0.229, 0.224, 0.225).

    Exact (up to float rounding) except at the zero-padded border of the first conv: the
    padding is 0 in ``x_dst`` but stood for 0 in ``x_src``, so output pixels whose window
    reaches the padding differ slightly (one pixel ring for a 3x3 conv).

    Args:
        state_dict: float weights; not modified.
        src_mean, src_std, dst_mean, dst_std: 3 values each, [0, 1] units.
        first_conv: key prefix of the first conv (``<first_conv>.weight``, optional ``.bias``).
        first_bn: key prefix of the BN right after it, used when the conv has no bias.

    Returns:
        A new dict (the other tensors are shared, not copied).

    Raises:
        KeyError: ``<first_conv>.weight`` is missing, or it has no bias and
            ``<first_bn>.running_mean`` is missing.
        ValueError: the normalisations do not have one value per input channel, or a std is 0.
    """
    wkey = f"{first_conv}.weight"
    if wkey not in state_dict:
        raise KeyError(f"{wkey} not in the state_dict")
    w = state_dict[wkey]
    c = w.shape[1]
    vals = [
        torch.as_tensor(v, dtype=torch.float64).reshape(-1)
        for v in (src_mean, src_std, dst_mean, dst_std)
    ]
    if any(v.numel() != c for v in vals):
        raise ValueError(f"normalisations need {c} values each (input channels of {wkey})")
    m_s, s_s, m_d, s_d = vals
    if bool((s_s == 0).any() or (s_d == 0).any()):
        raise ValueError("std must be non-zero")
    a = s_d / s_s
    b = (m_d - m_s) / s_s
    w64 = w.to(torch.float64)
    delta = (w64 * b.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    out = dict(state_dict)
    out[wkey] = (w64 * a.view(1, -1, 1, 1)).to(w.dtype)
    bkey = f"{first_conv}.bias"
    if bkey in state_dict:
        out[bkey] = (state_dict[bkey].to(torch.float64) + delta).to(state_dict[bkey].dtype)
    else:
        mkey = f"{first_bn}.running_mean" if first_bn else None
        if mkey is None or mkey not in state_dict:
            raise KeyError(f"{first_conv} has no bias and {mkey} is not in the state_dict")
        rm = state_dict[mkey]
        out[mkey] = (rm.to(torch.float64) - delta).to(rm.dtype)
    return out


# --------------------------------------------------------------------------- reading a file


@dataclass(frozen=True)
class TFLiteTensor:
    """One tensor of the graph.

    Attributes:
        index: its index in the subgraph (also the interpreter's tensor index).
        name: TF name(s), ``;``-joined by the converter.
        shape: dimensions (NHWC for activations).
        dtype: TFLite type name, e.g. ``"UINT8"``, ``"INT32"``, ``"FLOAT32"``.
        scale, zero_point: quantisation (1 value per tensor or one per ``quantized_dimension``
            entry), ``None`` when not quantised.
        quantized_dimension: the per-axis dimension.
        data: the stored values (``shape``, ``dtype``) of a constant, ``None`` for activations.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    quantized_dimension: int
    data: np.ndarray | None = field(repr=False)

    def dequantized(self) -> np.ndarray:
        """float32 values of a constant (dequantised when quantised).

        Raises:
            ValueError: not a constant.
        """
        if self.data is None:
            raise ValueError(f"tensor {self.index} {self.name!r} has no data (not a constant)")
        if self.scale is None or self.dtype.startswith("FLOAT"):
            return self.data.astype(np.float32)
        return dequantize(self.data, self.scale, self.zero_point, self.quantized_dimension)


@dataclass(frozen=True)
class TFLiteOp:
    """One operator: ``kind`` (builtin name, e.g. ``"CONV_2D"``), tensor indices (-1 = absent
    optional input) and the options that matter here (``stride``, ``dilation``, ``padding``,
    ``activation``, ``filter``, ``align_corners``, ``axis`` ...)."""

    index: int
    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    """The first subgraph of a TFLite file: tensors, operators in execution order, graph I/O."""

    path: str
    tensors: list[TFLiteTensor]
    ops: list[TFLiteOp]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def producer(self, tensor: int) -> TFLiteOp | None:
        """The operator writing ``tensor`` (None for graph inputs and constants)."""
        for op in self.ops:
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: int) -> list[TFLiteOp]:
        """The operators reading ``tensor``, in execution order."""
        return [op for op in self.ops if tensor in op.inputs]


def _op_options(tfl, op, kind: str) -> dict:
    table = op.BuiltinOptions()
    if table is None:
        return {}
    if kind in _CONV_KINDS:
        o = tfl.Conv2DOptions() if kind == "CONV_2D" else tfl.DepthwiseConv2DOptions()
        o.Init(table.Bytes, table.Pos)
        d = {
            "stride": (o.StrideH(), o.StrideW()),
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "padding": _PADDING.get(o.Padding(), str(o.Padding())),
            "activation": _ACTIVATION.get(
                o.FusedActivationFunction(), str(o.FusedActivationFunction())
            ),
        }
        if kind == "DEPTHWISE_CONV_2D":
            d["depth_multiplier"] = o.DepthMultiplier()
        return d
    if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = tfl.Pool2DOptions()
        o.Init(table.Bytes, table.Pos)
        return {
            "filter": (o.FilterHeight(), o.FilterWidth()),
            "stride": (o.StrideH(), o.StrideW()),
            "padding": _PADDING.get(o.Padding(), str(o.Padding())),
            "activation": _ACTIVATION.get(
                o.FusedActivationFunction(), str(o.FusedActivationFunction())
            ),
        }
    if kind == "RESIZE_BILINEAR":
        o = tfl.ResizeBilinearOptions()
        o.Init(table.Bytes, table.Pos)
        return {
            "align_corners": bool(o.AlignCorners()),
            "half_pixel_centers": bool(o.HalfPixelCenters()),
        }
    if kind == "CONCATENATION":
        o = tfl.ConcatenationOptions()
        o.Init(table.Bytes, table.Pos)
        return {"axis": o.Axis(), "activation": _ACTIVATION.get(o.FusedActivationFunction())}
    if kind == "FULLY_CONNECTED":
        o = tfl.FullyConnectedOptions()
        o.Init(table.Bytes, table.Pos)
        return {"activation": _ACTIVATION.get(o.FusedActivationFunction())}
    if kind == "ADD":
        o = tfl.AddOptions()
        o.Init(table.Bytes, table.Pos)
        return {"activation": _ACTIVATION.get(o.FusedActivationFunction())}
    return {}


def read_tflite(path: str | os.PathLike) -> TFLiteGraph:
    """Read the first subgraph of a TFLite flatbuffer (tensors with their constant data).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a TFLite flatbuffer (file identifier ``TFL3``) or no subgraph.
        ImportError: the ``tflite`` package is missing.
    """
    tfl = _tflite()
    path = os.fspath(path)
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError(f"{path}: not a TFLite flatbuffer (no 'TFL3' file identifier)")
    model = tfl.Model.GetRootAs(buf, 0)
    if model.SubgraphsLength() < 1:
        raise ValueError(f"{path}: the TFLite model has no subgraph")
    g = model.Subgraphs(0)
    type_names = {v: k for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}

    tensors = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        dtype = type_names.get(t.Type(), str(t.Type()))
        q = t.Quantization()
        scale = zp = None
        qdim = 0
        if q is not None and q.ScaleLength() > 0:
            scale = q.ScaleAsNumpy().astype(np.float64)
            zp = (
                q.ZeroPointAsNumpy().astype(np.int64)
                if q.ZeroPointLength()
                else np.zeros(1, np.int64)
            )
            qdim = q.QuantizedDimension()
        data = None
        b = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        if b is not None:
            if b.DataLength() > 0:
                raw = b.DataAsNumpy().tobytes()
            elif b.Offset() > 1:  # large models keep tensor data after the flatbuffer
                raw = buf[b.Offset() : b.Offset() + b.Size()]
            else:
                raw = None
            if raw is not None:
                if dtype not in _NP_DTYPE:
                    raise ValueError(
                        f"{path}: tensor {i} {t.Name().decode()!r} has unsupported type {dtype}"
                    )
                data = np.frombuffer(raw, dtype=_NP_DTYPE[dtype]).reshape(shape).copy()
        tensors.append(TFLiteTensor(i, t.Name().decode(), shape, dtype, scale, zp, qdim, data))

    ops = []
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        kind = op_names.get(builtin, str(builtin))
        if kind == "CUSTOM":
            kind = f"CUSTOM:{(code.CustomCode() or b'').decode()}"
        ins = tuple(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else ()
        outs = tuple(int(i) for i in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        ops.append(TFLiteOp(k, kind, ins, outs, _op_options(tfl, op, kind)))
    g_in = tuple(int(i) for i in g.InputsAsNumpy()) if g.InputsLength() else ()
    g_out = tuple(int(i) for i in g.OutputsAsNumpy()) if g.OutputsLength() else ()
    return TFLiteGraph(path, tensors, ops, g_in, g_out)


# --------------------------------------------------------------------------- conv conversion


@dataclass(frozen=True)
class _ConvSpec:
    """A torch conv to fill: names, torch weight shape, kind and the activation after its BN."""

    name: str
    bn: str | None
    shape: tuple[int, ...]
    depthwise: bool
    activation: str
    bn_eps: float = 1e-5


def _conv_specs(module: nn.Module) -> list[_ConvSpec]:
    """Every ``nn.Conv2d`` of ``module`` in module order, with the BN and activation following
    it in its ``nn.Sequential`` parent (torchvision's conv-BN-act layout)."""
    specs = []
    for name, m in module.named_modules():
        if not isinstance(m, nn.Conv2d):
            continue
        parent_name, _, idx = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        nxt = []
        if isinstance(parent, nn.Sequential) and idx.isdigit():
            nxt = list(parent)[int(idx) + 1 : int(idx) + 3]
        bn = nxt[0] if nxt and isinstance(nxt[0], nn.BatchNorm2d) else None
        act_mod = (
            nxt[1] if bn is not None and len(nxt) > 1 else (nxt[0] if nxt and bn is None else None)
        )
        act = {nn.ReLU6: "RELU6", nn.ReLU: "RELU"}.get(type(act_mod), "NONE")
        depthwise = m.groups > 1 and m.groups == m.in_channels
        specs.append(
            _ConvSpec(
                name,
                f"{parent_name}.{int(idx) + 1}" if bn is not None else None,
                tuple(m.weight.shape),
                depthwise,
                act,
                bn.eps if bn is not None else 1e-5,
            )
        )
    return specs


def _weight_tensor(graph: TFLiteGraph, op: TFLiteOp) -> TFLiteTensor:
    return graph.tensors[op.inputs[1]]


def _describe(graph: TFLiteGraph, op: TFLiteOp) -> str:
    w = _weight_tensor(graph, op) if len(op.inputs) > 1 else None
    wdesc = f", weights {w.name!r} {list(w.shape)}" if w is not None else ""
    return f"operator {op.index} ({op.kind}{wdesc})"


def _torch_conv_weight(graph: TFLiteGraph, op: TFLiteOp) -> np.ndarray:
    w = _weight_tensor(graph, op)
    if w.data is None:
        raise ValueError(f"{graph.path}: {_describe(graph, op)} has non-constant weights")
    if op.kind == "DEPTHWISE_CONV_2D":
        return depthwise_weight_to_torch(w.dequantized())
    if op.kind == "FULLY_CONNECTED":
        return w.dequantized()
    return conv_weight_to_torch(w.dequantized())


def _bias(graph: TFLiteGraph, op: TFLiteOp, out_channels: int) -> np.ndarray:
    """float32 bias of a conv / FC op (zeros when absent). A quantised int32 bias is added to
    the integer accumulator by the kernels, so its real scale is input_scale * weight_scale."""
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return np.zeros(out_channels, np.float32)
    b = graph.tensors[op.inputs[2]]
    if b.data is None:
        raise ValueError(f"{graph.path}: {_describe(graph, op)} has a non-constant bias {b.name!r}")
    x, w = graph.tensors[op.inputs[0]], _weight_tensor(graph, op)
    if b.dtype == "INT32" and x.scale is not None and w.scale is not None:
        scale = x.scale[0] * np.broadcast_to(w.scale, (out_channels,) if w.scale.size > 1 else (1,))
        return dequantize(b.data, scale, 0, 0)
    return b.dequantized().reshape(-1)


def _check_conv(graph: TFLiteGraph, op: TFLiteOp, spec: _ConvSpec) -> np.ndarray:
    """The op's weights in torch layout, after checking them against ``spec``."""
    want = "DEPTHWISE_CONV_2D" if spec.depthwise else "CONV_2D"
    if op.kind != want:
        raise ValueError(
            f"{graph.path}: {_describe(graph, op)} found where {spec.name} needs a {want}"
        )
    w = _torch_conv_weight(graph, op)
    if tuple(w.shape) != spec.shape:
        raise ValueError(
            f"{graph.path}: {_describe(graph, op)} is {tuple(w.shape)} in torch layout, "
            f"{spec.name} needs {spec.shape} (another width_mult or another network?)"
        )
    act = op.options.get("activation", "NONE")
    if act != spec.activation:
        raise ValueError(
            f"{graph.path}: {_describe(graph, op)} has activation {act}, {spec.name} {spec.activation}"
        )
    if spec.shape[-1] > 1 and op.options.get("padding") != "SAME":
        raise ValueError(
            f"{graph.path}: {_describe(graph, op)} pads {op.options.get('padding')}; only 'SAME' is supported"
        )
    return w


def _put_conv(
    state: dict[str, torch.Tensor], prefix: str, spec: _ConvSpec, w: np.ndarray, bias: np.ndarray
):
    """Conv weight + identity BN carrying the bias (or the bias on the conv itself)."""
    state[f"{prefix}{spec.name}.weight"] = torch.from_numpy(
        np.ascontiguousarray(w, dtype=np.float32)
    )
    b = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
    if spec.bn is None:
        state[f"{prefix}{spec.name}.bias"] = b
        return
    n = b.numel()
    state[f"{prefix}{spec.bn}.weight"] = torch.ones(n)
    state[f"{prefix}{spec.bn}.bias"] = b
    state[f"{prefix}{spec.bn}.running_mean"] = torch.zeros(n)
    state[f"{prefix}{spec.bn}.running_var"] = torch.full((n,), 1.0 - spec.bn_eps)
    state[f"{prefix}{spec.bn}.num_batches_tracked"] = torch.tensor(0)


def _reads(graph: TFLiteGraph, op: TFLiteOp, tensor: int) -> bool:
    """``op``'s data input is ``tensor`` or a residual ADD of it."""
    src = op.inputs[0]
    if src == tensor:
        return True
    p = graph.producer(src)
    return p is not None and p.kind == "ADD" and tensor in p.inputs


@dataclass
class _TrunkMatch:
    pairs: list[tuple[_ConvSpec, TFLiteOp]]
    output: int  # tensor index of the last matched layer's output (after its residual ADD)
    state: dict[str, torch.Tensor]


def _block_output(graph: TFLiteGraph, conv_out: int) -> int:
    """A block's output: the conv's output, or the residual ADD consuming it."""
    adds = [op for op in graph.consumers(conv_out) if op.kind == "ADD"]
    return adds[0].outputs[0] if len(adds) == 1 else conv_out


def _match_mobilenet_v2(graph: TFLiteGraph, width_mult: float, prefix: str = "") -> _TrunkMatch:
    """Match the file's convs to MobileNetV2 (``features.0`` .. ``features.17``, plus
    ``features.18`` when the file has TF-slim's ``Conv_1``) by graph order, kind, shape,
    activation and data flow."""
    ref = MobileNetV2(width_mult, last_conv=True)
    specs = _conv_specs(ref)
    last = [s for s in specs if s.name.startswith("features.18.")]
    specs = [s for s in specs if not s.name.startswith("features.18.")]
    convs = [op for op in graph.ops if op.kind in _CONV_KINDS]
    if len(convs) < len(specs):
        raise ValueError(
            f"{graph.path}: {len(convs)} conv operators, MobileNetV2 needs at least {len(specs)} "
            "(not a MobileNetV2 graph)"
        )
    state: dict[str, torch.Tensor] = {}
    pairs = []
    prev_out = None
    for spec, op in zip(specs, convs):
        w = _check_conv(graph, op, spec)
        if prev_out is None:
            src = graph.producer(op.inputs[0])
            if src is not None and src.kind in _CONV_KINDS + ("ADD",):
                raise ValueError(
                    f"{graph.path}: {_describe(graph, op)} (features.0) does not read the input"
                )
        elif not _reads(graph, op, prev_out):
            raise ValueError(
                f"{graph.path}: {_describe(graph, op)} does not read the output of operator "
                f"{pairs[-1][1].index} (the layer before {spec.name}); graph order differs from MobileNetV2"
            )
        _put_conv(state, prefix, spec, w, _bias(graph, op, spec.shape[0]))
        pairs.append((spec, op))
        prev_out = op.outputs[0]
    out = _block_output(graph, prev_out)
    nxt = [op for op in graph.consumers(out) if op.kind == "CONV_2D"]
    if len(nxt) == 1 and tuple(_torch_conv_weight(graph, nxt[0]).shape) == last[0].shape:
        spec, op = last[0], nxt[0]
        _put_conv(
            state, prefix, spec, _check_conv(graph, op, spec), _bias(graph, op, spec.shape[0])
        )
        pairs.append((spec, op))
        out = op.outputs[0]
    return _TrunkMatch(pairs, out, state)


def _follow(graph: TFLiteGraph, tensor: int, kinds: Sequence[str]) -> TFLiteOp | None:
    """The single consumer of ``tensor`` of one of ``kinds`` (None if none or several)."""
    found = [op for op in graph.consumers(tensor) if op.kind in kinds]
    return found[0] if len(found) == 1 else None


def mobilenet_v2_state_dict_from_tflite(
    path: str | os.PathLike, include_classifier: bool = False, width_mult: float = 1.0
) -> dict[str, torch.Tensor]:
    """ImageNet MobileNetV2 weights from a TFLite file (Sandler et al., CVPR 2018).

    Reads a TF-slim MobileNetV2 graph (e.g. ``mobilenet_v2_1.0_224_quant.tflite``, uint8
    per-tensor quantised, BN folded; float files work the same) and returns its weights under
    torchvision's names for :class:`~joint_perception.models.backbones.MobileNetV2`: conv
    weights ``features.N....weight`` and, for each BN, an identity carrying the folded bias
    (module docstring). The backbone of a DeepLabV3-MobileNetV2 file loads too (no
    ``features.18``: that file has no ``Conv_1``). The weights expect TF-slim's input
    normalisation (:data:`TF_SLIM_MEAN` / :data:`TF_SLIM_STD`, RGB in [-1, 1]) unless passed
    through :func:`fold_input_normalization`, and TF "SAME" padding for exact outputs
    (``mobilenet_v2(tf_same_padding=True)``).

    Args:
        path: the ``.tflite`` file.
        include_classifier: also return ``classifier.1.weight`` (K, 1280) and
            ``classifier.1.bias`` (K,) (torchvision's ``Linear`` after global average pooling;
            K = 1001 for TF-slim's ImageNet, class 0 = background).
        width_mult: the network's width multiplier (checked through the weight shapes).

    Returns:
        ``{name: float32 tensor}`` (``num_batches_tracked`` int64 0) in torch layout.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the graph is not a MobileNetV2 of this width (the message names the
            operator and weight tensor that differ), or ``include_classifier`` and no
            pooled classifier follows the last conv.
        ImportError: the ``tflite`` package is missing.
    """
    graph = read_tflite(path)
    match = _match_mobilenet_v2(graph, width_mult)
    state = match.state
    if include_classifier:
        # TF-slim's classifier: Conv_1 (features.18) -> global pool -> 1x1 conv / FC, no activation
        has_last = match.pairs[-1][0].name.startswith("features.18.")
        pool = _follow(graph, match.output, ("AVERAGE_POOL_2D", "MEAN")) if has_last else None
        head = None
        if pool is not None:
            t = pool.outputs[0]
            head = _follow(graph, t, ("CONV_2D", "FULLY_CONNECTED"))
            if head is None and (r := _follow(graph, t, ("RESHAPE", "SQUEEZE"))) is not None:
                head = _follow(graph, r.outputs[0], ("CONV_2D", "FULLY_CONNECTED"))
        if head is None or head.options.get("activation", "NONE") != "NONE":
            raise ValueError(
                f"{graph.path}: no global-pool + classifier after {match.pairs[-1][0].name} "
                f"(operator {match.pairs[-1][1].index}); use include_classifier=False"
            )
        w = _torch_conv_weight(graph, head)
        w = w.reshape(w.shape[0], -1)
        if w.shape[1] != match.pairs[-1][0].shape[0]:
            raise ValueError(
                f"{graph.path}: {_describe(graph, head)} does not take {match.pairs[-1][0].shape[0]} inputs"
            )
        state["classifier.1.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        state["classifier.1.bias"] = torch.from_numpy(_bias(graph, head, w.shape[0]))
    return state


# --------------------------------------------------------------------------- DeepLabV3


@dataclass(frozen=True)
class DeepLabTFLiteInfo:
    """Structure of a DeepLabV3-MobileNetV2 file, as read from its graph.

    Attributes:
        num_classes: logits channels (21 for PASCAL VOC, class 0 = background).
        output_stride: input size / ASPP feature size (8 or 16; product of the conv strides).
        aspp_channels: channels of the ASPP branches and projection (256).
        align_corners: of the final bilinear upsampling of the logits (DeepLab: True).
        conv_geometry: ``{conv name: (stride, dilation)}`` of every backbone conv in the file.
    """

    num_classes: int
    output_stride: int
    aspp_channels: int
    align_corners: bool
    conv_geometry: dict[str, tuple[int, int]]


def _origin(graph: TFLiteGraph, tensor: int) -> TFLiteOp | None:
    """The op producing ``tensor``, skipping requantisation / resize / reshape ops."""
    op = graph.producer(tensor)
    while op is not None and op.kind in _PASS_THROUGH:
        op = graph.producer(op.inputs[0])
    return op


def deeplabv3_mobilenet_v2_state_dict_from_tflite(
    path: str | os.PathLike, width_mult: float = 1.0
) -> tuple[dict[str, torch.Tensor], DeepLabTFLiteInfo]:
    """DeepLabV3-MobileNetV2 weights (Chen et al. 2017, arXiv:1706.05587) from a TFLite file.

    The graph (e.g. ``deeplabv3_mnv2_pascal_quant.tflite``) is a MobileNetV2 trunk without
    ``Conv_1`` at output stride 8 or 16 (later strides replaced by dilation), then TF DeepLab's
    MobileNet ASPP: a 1x1 conv ``aspp0`` and an image-pooling branch (global average pool,
    1x1 conv, bilinear broadcast back), concatenated as [image_pooling, aspp0], a 1x1
    ``concat_projection``, a 1x1 ``logits`` conv with bias, and bilinear upsampling to the
    input size. Convs are matched and checked as in
    :func:`mobilenet_v2_state_dict_from_tflite`; the head by data flow.

    Returns:
        (state_dict, info): names ``backbone.features.N...``, ``aspp0.{0,1}.*``,
        ``image_pooling.{0,1}.*``, ``concat_projection.{0,1}.*`` (conv, identity BN),
        ``logits.weight`` / ``logits.bias``, float32 in torch layout, for
        :class:`~joint_perception.models.pascal_teacher.DeepLabV3MobileNetV2`; ``info`` the
        structure read from the graph (:class:`DeepLabTFLiteInfo`). Input normalisation as
        for the MobileNetV2 (TF-slim, [-1, 1]).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the graph differs from this structure (e.g. more ASPP branches); the
            message names the operator or tensor.
        ImportError: the ``tflite`` package is missing.
    """
    graph = read_tflite(path)
    match = _match_mobilenet_v2(graph, width_mult, prefix="backbone.")
    if match.pairs[-1][0].name.startswith("features.18."):
        raise ValueError(
            f"{graph.path}: {_describe(graph, match.pairs[-1][1])}: a Conv_1 before the ASPP is not supported"
        )
    state = match.state
    feat = match.output
    feat_ch = match.pairs[-1][0].shape[0]
    geometry = {
        s.name: (op.options["stride"][0], op.options["dilation"][0]) for s, op in match.pairs
    }
    output_stride = int(np.prod([st for st, _ in geometry.values()]))

    def head_conv(
        op: TFLiteOp | None, name: str, what: str, activation: str, bn: bool = True
    ) -> np.ndarray:
        if op is None or op.kind != "CONV_2D":
            raise ValueError(
                f"{graph.path}: no {what} (1x1 CONV_2D) found after tensor {graph.tensors[feat].name!r}"
            )
        w = _torch_conv_weight(graph, op)
        if w.shape[2:] != (1, 1) or op.options.get("activation") != activation:
            raise ValueError(
                f"{graph.path}: {_describe(graph, op)} as {name}: need a 1x1 conv with activation {activation}"
            )
        spec = _ConvSpec(
            f"{name}.0" if bn else name,
            f"{name}.1" if bn else None,
            tuple(w.shape),
            False,
            activation,
        )
        _put_conv(state, "", spec, w, _bias(graph, op, w.shape[0]))
        return w

    convs_on_feat = [op for op in graph.consumers(feat) if op.kind == "CONV_2D"]
    if len(convs_on_feat) != 1:
        raise ValueError(
            f"{graph.path}: {len(convs_on_feat)} convs read {graph.tensors[feat].name!r}; DeepLabV3-MobileNetV2 "
            "has one (aspp0; atrous ASPP branches are not supported)"
        )
    aspp0 = convs_on_feat[0]
    w0 = head_conv(aspp0, "aspp0", "aspp0", "RELU")
    if w0.shape[1] != feat_ch:
        raise ValueError(
            f"{graph.path}: {_describe(graph, aspp0)} does not take the {feat_ch} backbone channels"
        )
    pool = _follow(graph, feat, ("AVERAGE_POOL_2D", "MEAN"))
    if pool is None:
        raise ValueError(
            f"{graph.path}: no image pooling (average pool) reads {graph.tensors[feat].name!r}"
        )
    fshape = graph.tensors[feat].shape
    if pool.kind == "AVERAGE_POOL_2D" and pool.options.get("filter") != tuple(fshape[1:3]):
        raise ValueError(
            f"{graph.path}: operator {pool.index} pools {pool.options.get('filter')} over a "
            f"{tuple(fshape[1:3])} feature map; only global image pooling is supported"
        )
    pool_conv = _follow(graph, pool.outputs[0], ("CONV_2D",))
    head_conv(pool_conv, "image_pooling", "image pooling conv", "RELU")
    concat = next((op for op in graph.ops if op.kind == "CONCATENATION"), None)
    if concat is None:
        raise ValueError(f"{graph.path}: no CONCATENATION of the ASPP branches")
    origins = [_origin(graph, t) for t in concat.inputs]
    if [o.index if o else None for o in origins] != [pool_conv.index, aspp0.index]:
        names = [graph.tensors[t].name for t in concat.inputs]
        raise ValueError(
            f"{graph.path}: operator {concat.index} concatenates {names}; expected [image_pooling, aspp0]"
        )
    proj = _follow(graph, concat.outputs[0], ("CONV_2D",))
    wp = head_conv(proj, "concat_projection", "concat_projection", "RELU")
    logits = _follow(graph, proj.outputs[0], ("CONV_2D",))
    wl = head_conv(logits, "logits", "logits conv", "NONE", bn=False)
    if wp.shape[1] != 2 * w0.shape[0] or wl.shape[1] != wp.shape[0]:
        raise ValueError(
            f"{graph.path}: ASPP channels do not chain ({w0.shape}, {wp.shape}, {wl.shape})"
        )
    align = True
    t = logits.outputs[0]
    while (r := _follow(graph, t, ("RESIZE_BILINEAR",))) is not None:
        align = r.options.get("align_corners", False)
        t = r.outputs[0]
    info = DeepLabTFLiteInfo(
        int(wl.shape[0]), output_stride, int(w0.shape[0]), bool(align), geometry
    )
    return state, info
