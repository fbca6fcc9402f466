"""TFLite -> torch import (joint_perception.models.tflite_import) and the PASCAL teacher.

Pure tests use hand-made arrays. The others use google-coral's TFLite files in
``../shared/data/pretrained/coral_test_data`` (skipped when absent) and, as the reference, a
real TFLite interpreter (``ai-edge-litert``, test-only; those comparisons skip without it, the
known-label checks do not need it).

Measured on these files (x86 CPU, torch 2.13): converted MobileNetV2 vs the TFLite logits
(dequantised input of its softmax) max |diff| 0.39 on cat.bmp and 0.28 on grace_hopper.bmp,
mean 0.06-0.08, for logits whose TFLite quantisation step is 0.099; the difference is not 0
because TFLite runs uint8 activations (every layer's output rounded to 256 levels) while
torch runs float32 on the dequantised weights. With torch's symmetric padding instead of TF
"SAME" the max |diff| is 2.6-3.1. DeepLab teacher: 97.8 % of bird_segmentation.bmp's pixels
equal bird_segmentation_mask.bmp (TFLite itself: 97.9 %) and 99.86 % equal the TFLite output.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from joint_perception.models import tflite_import as T
from joint_perception.models.backbones import Conv2dTFSame, load_pretrained, mobilenet_v2, resnet18
from joint_perception.models.base import IMAGENET_MEAN, IMAGENET_STD
from joint_perception.models.pascal_teacher import (
    PASCAL_TO_NYU40,
    PASCAL_VOC_CLASSES,
    DeepLabV3MobileNetV2,
    pascal_teacher_from_tflite,
    pascal_to_nyu40,
)
from joint_perception.nyuv2_classes import ID40

pytestmark = pytest.mark.usefixtures("single_torch_thread")

MBV2 = "mobilenet_v2_1.0_224_quant.tflite"
DEEPLAB = "deeplabv3_mnv2_pascal_quant.tflite"
# max |torch - TFLite| over the 1001 logits: 10 output quantisation steps (0.099 each);
# measured 0.39 (uint8 activations in TFLite vs float32 here).
LOGIT_ATOL = 1.0

# --------------------------------------------------------------------------- pure unit tests


def test_dequantize_per_tensor_and_per_axis():
    q = np.array([0, 128, 255], np.uint8)
    np.testing.assert_array_equal(T.dequantize(q, 0.5, 128), [-64.0, 0.0, 63.5])
    assert T.dequantize(q, 0.5, 128).dtype == np.float32
    # int32 bias, zero point 0, scale = input_scale * weight_scale
    np.testing.assert_allclose(
        T.dequantize(np.array([1000, -4], np.int32), (1 / 128) * 0.02, 0), [0.15625, -0.000625]
    )
    q2 = np.array([[1, 2, 3], [4, 5, 6]], np.int8)
    got = T.dequantize(q2, [1.0, 0.5], [0, 4], axis=0)
    np.testing.assert_array_equal(got, [[1, 2, 3], [0, 0.5, 1]])
    got = T.dequantize(q2, [1.0, 2.0, 3.0], 1, axis=-1)
    np.testing.assert_array_equal(got, [[0, 2, 6], [3, 8, 15]])
    with pytest.raises(ValueError, match="need the quantised axis"):
        T.dequantize(q2, [1.0, 0.5])
    with pytest.raises(ValueError, match="3 scales for axis 0"):
        T.dequantize(q2, [1.0, 0.5, 2.0], axis=0)
    with pytest.raises(ValueError, match="zero points"):
        T.dequantize(q2, [1.0, 0.5], [0, 1, 2], axis=0)


def test_conv_layout_ohwi_to_oihw_matches_tf_convolution():
    rng = np.random.default_rng(0)
    w_ohwi = rng.standard_normal((4, 3, 2, 5)).astype(np.float32)  # O, H, W, I
    w = T.conv_weight_to_torch(w_ohwi)
    assert w.shape == (4, 5, 3, 2) and w[1, 4, 2, 0] == w_ohwi[1, 2, 0, 4]
    # TF: out[y, x, o] = sum_{dy, dx, i} in[y + dy, x + dx, i] * w[o, dy, dx, i] (VALID)
    x_hwc = rng.standard_normal((6, 7, 5)).astype(np.float32)
    ref = np.zeros((4, 6, 4), np.float32)  # (out H, out W, O)
    for y in range(4):
        for xx in range(6):
            ref[y, xx] = np.einsum("hwi,ohwi->o", x_hwc[y : y + 3, xx : xx + 2], w_ohwi)
    got = F.conv2d(torch.from_numpy(x_hwc).permute(2, 0, 1)[None], torch.from_numpy(w))[0].permute(
        1, 2, 0
    )
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)
    with pytest.raises(ValueError, match="4-D"):
        T.conv_weight_to_torch(np.zeros((3, 3)))


def test_depthwise_layout_with_depth_multiplier_matches_tf():
    rng = np.random.default_rng(1)
    c, m = 3, 2
    w_tf = rng.standard_normal((1, 3, 3, c * m)).astype(np.float32)
    w = T.depthwise_weight_to_torch(w_tf)
    assert w.shape == (c * m, 1, 3, 3)
    x_hwc = rng.standard_normal((5, 5, c)).astype(np.float32)
    # TF depthwise: out[..., ch * m + k] = sum in[..., ch] * w[0, dy, dx, ch * m + k]
    ref = np.zeros((3, 3, c * m), np.float32)
    for y in range(3):
        for xx in range(3):
            patch = x_hwc[y : y + 3, xx : xx + 3]
            for ch in range(c):
                for k in range(m):
                    ref[y, xx, ch * m + k] = (patch[:, :, ch] * w_tf[0, :, :, ch * m + k]).sum()
    x = torch.from_numpy(x_hwc).permute(2, 0, 1)[None]
    got = F.conv2d(x, torch.from_numpy(w), groups=c)[0].permute(1, 2, 0)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)
    with pytest.raises(ValueError, match="1, H, W"):
        T.depthwise_weight_to_torch(np.zeros((2, 3, 3, 4)))


def test_tf_same_padding_pads_bottom_right_for_even_sizes():
    torch.manual_seed(0)
    conv = Conv2dTFSame(3, 4, 3, stride=2, padding=1, bias=False)
    ref = nn.Conv2d(3, 4, 3, stride=2, padding=0, bias=False)
    ref.weight.data.copy_(conv.weight.data)
    x = torch.randn(1, 3, 8, 10)  # even: TF pads 0 top/left, 1 bottom/right
    torch.testing.assert_close(conv(x), ref(F.pad(x, (0, 1, 0, 1))))
    sym = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    sym.weight.data.copy_(conv.weight.data)
    assert conv(x).shape == sym(x).shape and not torch.allclose(conv(x), sym(x))
    x = torch.randn(1, 3, 9, 11)  # odd: symmetric, as torch's padding=1
    torch.testing.assert_close(conv(x), sym(x))
    conv.stride, conv.dilation = (1, 1), (2, 2)  # stride 1, dilation 2: symmetric 2
    sym.stride, sym.dilation, sym.padding = (1, 1), (2, 2), (2, 2)
    torch.testing.assert_close(conv(x), sym(x))


def test_mobilenet_v2_tf_same_option_keeps_names_and_default():
    assert not any(isinstance(m, Conv2dTFSame) for m in mobilenet_v2().modules())
    net = mobilenet_v2(tf_same_padding=True)
    same = [n for n, m in net.named_modules() if isinstance(m, Conv2dTFSame)]
    assert same == [
        "features.0.0",
        "features.2.conv.1.0",
        "features.4.conv.1.0",
        "features.7.conv.1.0",
        "features.14.conv.1.0",
    ]
    assert list(net.state_dict()) == list(mobilenet_v2().state_dict())
    net.eval()
    shapes = [tuple(f.shape) for f in net.forward_features(torch.rand(1, 3, 64, 80))]
    assert shapes == [(1, 24, 16, 20), (1, 32, 8, 10), (1, 96, 4, 5), (1, 320, 2, 3)]


def _conv_bn_net(bias: bool) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=bias), nn.BatchNorm2d(8))
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    net[1].weight.data.uniform_(0.5, 2)
    return net.eval()


@pytest.mark.parametrize("bias", [False, True])
def test_fold_input_normalization_is_exact_off_the_border(bias):
    net = _conv_bn_net(bias)
    sd = net.state_dict()
    folded = T.fold_input_normalization(
        sd, T.TF_SLIM_MEAN, T.TF_SLIM_STD, IMAGENET_MEAN, IMAGENET_STD, "0", "1"
    )
    assert folded is not sd and torch.equal(sd["0.weight"], net[0].weight)  # input untouched
    net2 = _conv_bn_net(bias)
    net2.load_state_dict(folded)
    p = torch.rand(2, 3, 16, 20)
    mean, std = (
        torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        a = net((p - 0.5) / 0.5)
        b = net2((p - mean) / std)
    torch.testing.assert_close(
        b[..., 1:, 1:], a[..., 1:, 1:], atol=1e-5, rtol=1e-5
    )  # top/left touch padding
    assert (b[..., 0, :] - a[..., 0, :]).abs().max() > 1e-3


def test_fold_input_normalization_errors():
    sd = _conv_bn_net(False).state_dict()
    with pytest.raises(KeyError, match="nope.weight"):
        T.fold_input_normalization(
            sd, T.TF_SLIM_MEAN, T.TF_SLIM_STD, IMAGENET_MEAN, IMAGENET_STD, "nope"
        )
    with pytest.raises(KeyError, match="no bias"):
        T.fold_input_normalization(
            sd, T.TF_SLIM_MEAN, T.TF_SLIM_STD, IMAGENET_MEAN, IMAGENET_STD, "0", None
        )
    with pytest.raises(ValueError, match="3 values"):
        T.fold_input_normalization(sd, (0.5,), (0.5,), IMAGENET_MEAN, IMAGENET_STD, "0", "1")
    with pytest.raises(ValueError, match="non-zero"):
        T.fold_input_normalization(
            sd, T.TF_SLIM_MEAN, (0, 1, 1), IMAGENET_MEAN, IMAGENET_STD, "0", "1"
        )


def test_pascal_to_nyu40_mapping():
    pid = {n: i for i, n in enumerate(PASCAL_VOC_CLASSES)}
    assert len(PASCAL_VOC_CLASSES) == 21 and PASCAL_TO_NYU40.shape == (21,)
    expect = {
        "background": 0, "chair": ID40["chair"], "sofa": ID40["sofa"], "diningtable": ID40["table"],
        "tvmonitor": ID40["television"], "person": ID40["person"], "pottedplant": ID40["otherprop"],
        "bottle": ID40["otherprop"], "aeroplane": 0, "horse": 0,
    }  # fmt: skip
    for name, nyu in expect.items():
        assert PASCAL_TO_NYU40[pid[name]] == nyu, name
    labels = np.array([[0, 9], [18, 20]])
    np.testing.assert_array_equal(pascal_to_nyu40(labels), [[0, 5], [6, 25]])
    t = pascal_to_nyu40(torch.tensor([[15, 11]]))
    assert t.dtype == torch.int64 and t.tolist() == [[31, 7]]
    with pytest.raises(IndexError):
        pascal_to_nyu40(np.array([255]))
    with pytest.raises(IndexError):
        pascal_to_nyu40(torch.tensor([21]))
    with pytest.raises(ValueError):
        PASCAL_TO_NYU40[0] = 1


@pytest.mark.parametrize(
    "os_, dilations",
    [
        # TF-slim: the first layer that loses its stride keeps dilation 1
        (16, {13: 1, 14: 1, 15: 2, 17: 2}),
        (8, {6: 1, 7: 1, 8: 2, 13: 2, 14: 2, 15: 4, 17: 4}),
    ],
)
def test_deeplab_output_stride_follows_tf_slim(os_, dilations):
    net = DeepLabV3MobileNetV2(num_classes=5, output_stride=os_, aspp_channels=16).eval()
    for i, d in dilations.items():
        dw = net.backbone.features[i].conv[1][0]
        assert (dw.stride, dw.dilation) == ((1, 1), (d, d)), i
    assert net.backbone.features[4].conv[1][0].stride == (2, 2)
    assert net.backbone.strides == [4, 8, min(16, os_), os_]
    with torch.no_grad():
        out = net(torch.rand(1, 3, 33, 41))
    assert out.shape == (1, 5, 33, 41)
    with pytest.raises(ValueError, match="output_stride"):
        DeepLabV3MobileNetV2(output_stride=4)


# --------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def coral(shared_data):
    d = shared_data / "pretrained" / "coral_test_data"
    if not (d / MBV2).is_file() or not (d / DEEPLAB).is_file():
        pytest.skip(f"coral TFLite test files not found in {d}")
    return d


@pytest.fixture(scope="module")
def imagenet_sd(coral):
    return T.mobilenet_v2_state_dict_from_tflite(coral / MBV2, include_classifier=True)


class _Classifier(nn.Module):
    """torchvision-named MobileNetV2 classifier: features -> global mean -> Linear."""

    def __init__(self, tf_same_padding: bool = True):
        super().__init__()
        self.features = mobilenet_v2(last_conv=True, tf_same_padding=tf_same_padding).features
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1001))

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def _classifier(sd, tf_same_padding=True) -> _Classifier:
    net = _Classifier(tf_same_padding)
    net.load_state_dict(sd, strict=True)
    return net.eval()


def _image_224(coral, name: str) -> np.ndarray:
    bgr = cv2.imread(str(coral / f"{name}.bmp"), cv2.IMREAD_COLOR)
    assert bgr is not None, name
    return cv2.resize(
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (224, 224), interpolation=cv2.INTER_AREA
    )


def _as_tflite_input(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> the TFLite model's dequantised input (q - 128) / 128, NCHW."""
    return (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() - 128.0) / 128.0


def _as_imagenet_input(rgb: np.ndarray) -> torch.Tensor:
    mean, std = (
        torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
    )
    return (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0 - mean) / std


def _labels(coral) -> list[str]:
    return (coral / "imagenet_labels.txt").read_text().splitlines()


def _tflite_logits(coral, rgb: np.ndarray) -> np.ndarray:
    """Dequantised logits (the SOFTMAX input) of the TFLite model for one uint8 image."""
    interp_mod = pytest.importorskip(
        "ai_edge_litert.interpreter", reason="ai-edge-litert (TFLite runtime) not installed"
    )
    graph = T.read_tflite(coral / MBV2)
    softmax = next(op for op in graph.ops if op.kind == "SOFTMAX")
    t = graph.tensors[softmax.inputs[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # preserve_all_tensors is "for debugging"
        it = interp_mod.Interpreter(
            model_path=str(coral / MBV2), experimental_preserve_all_tensors=True
        )
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], rgb[None])
    it.invoke()
    return T.dequantize(it.get_tensor(t.index), t.scale, t.zero_point).reshape(-1)


IMAGES = [("cat", "Egyptian cat"), ("grace_hopper", "military uniform")]


def test_converted_state_dict_layout(imagenet_sd):
    own = _Classifier().state_dict()
    assert set(imagenet_sd) == set(own)
    for k, v in imagenet_sd.items():
        assert v.shape == own[k].shape and v.dtype == own[k].dtype, k
    assert imagenet_sd["classifier.1.weight"].shape == (1001, 1280)
    # BN is an identity carrying the folded bias
    assert torch.equal(imagenet_sd["features.1.conv.0.1.weight"], torch.ones(32))
    assert torch.equal(imagenet_sd["features.1.conv.0.1.running_mean"], torch.zeros(32))
    torch.testing.assert_close(
        imagenet_sd["features.1.conv.0.1.running_var"] + 1e-5, torch.ones(32)
    )


@pytest.mark.parametrize("name, label", IMAGES)
def test_imagenet_top1_known_labels(coral, imagenet_sd, name, label):
    rgb = _image_224(coral, name)
    with torch.no_grad():
        logits = _classifier(imagenet_sd)(_as_tflite_input(rgb))[0]
    assert _labels(coral)[int(logits.argmax())] == label


@pytest.mark.parametrize("name, label", IMAGES)
def test_imagenet_logits_match_tflite_interpreter(coral, imagenet_sd, name, label):
    rgb = _image_224(coral, name)
    ref = _tflite_logits(coral, rgb)
    with torch.no_grad():
        same = _classifier(imagenet_sd)(_as_tflite_input(rgb))[0].numpy()
        sym = _classifier(imagenet_sd, tf_same_padding=False)(_as_tflite_input(rgb))[0].numpy()
    assert int(same.argmax()) == int(ref.argmax()) and _labels(coral)[int(ref.argmax())] == label
    assert np.abs(same - ref).max() < LOGIT_ATOL
    assert np.abs(same - ref).mean() < 0.2
    # torch's symmetric padding shifts every stride-2 layer: clearly further from TF
    assert np.abs(sym - ref).max() > 2 * np.abs(same - ref).max()


@pytest.mark.parametrize("name, label", IMAGES)
def test_folded_imagenet_normalisation_same_top1(coral, imagenet_sd, name, label):
    folded = T.fold_input_normalization(
        imagenet_sd, T.TF_SLIM_MEAN, T.TF_SLIM_STD, IMAGENET_MEAN, IMAGENET_STD
    )
    rgb = _image_224(coral, name)
    with torch.no_grad():
        ref = _classifier(imagenet_sd)(_as_tflite_input(rgb))[0]
        got = _classifier(folded)(_as_imagenet_input(rgb))[0]
    assert _labels(coral)[int(got.argmax())] == label
    # differs from the unfolded net by the border of the first conv and 1/128 vs 1/127.5
    assert (got - ref).abs().max() < LOGIT_ATOL


def test_load_pretrained_accepts_tflite(coral, imagenet_sd, tmp_path):
    net = mobilenet_v2()
    report = load_pretrained(net, coral / MBV2)
    assert report.missing == [] and report.mismatched == []
    assert report.loaded == len(net.state_dict())
    assert report.unexpected and all(k.startswith("features.18.") for k in report.unexpected)
    folded = T.fold_input_normalization(
        imagenet_sd, T.TF_SLIM_MEAN, T.TF_SLIM_STD, IMAGENET_MEAN, IMAGENET_STD
    )
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, folded[k], msg=k)
    full = mobilenet_v2(last_conv=True, tf_same_padding=True)
    assert load_pretrained(full, coral / MBV2, strict=True).loaded == len(full.state_dict())
    # the DeepLab file's backbone loads too (no Conv_1 there)
    report = load_pretrained(mobilenet_v2(), coral / DEEPLAB, strict=True)
    assert report.missing == [] and report.unexpected == []
    # .pth state_dict files keep loading
    torch.save(net.state_dict(), tmp_path / "mbv2.pth")
    again = mobilenet_v2()
    assert load_pretrained(again, tmp_path / "mbv2.pth", strict=True).missing == []
    torch.testing.assert_close(again.state_dict(), net.state_dict())
    with pytest.raises(ValueError, match="MobileNetV2 only"):
        load_pretrained(resnet18(), coral / MBV2)


def test_mismatching_graph_errors_name_the_tensor(coral):
    with pytest.raises(
        ValueError, match=r"operator 0 \(CONV_2D, weights 'MobilenetV2/Conv/.*width_mult"
    ):
        T.mobilenet_v2_state_dict_from_tflite(coral / MBV2, width_mult=0.5)
    with pytest.raises(ValueError, match="no global-pool \\+ classifier after features.17"):
        T.mobilenet_v2_state_dict_from_tflite(coral / DEEPLAB, include_classifier=True)
    with pytest.raises(ValueError, match="Conv_1 before the ASPP"):
        T.deeplabv3_mobilenet_v2_state_dict_from_tflite(coral / MBV2)
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        T.read_tflite(coral / "imagenet_labels.txt")


@pytest.fixture(scope="module")
def bird(coral):
    rgb = cv2.cvtColor(
        cv2.imread(str(coral / "bird_segmentation.bmp"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    mask = cv2.imread(str(coral / "bird_segmentation_mask.bmp"), cv2.IMREAD_UNCHANGED)
    assert rgb.shape == (513, 513, 3) and mask.shape == (513, 513)
    return rgb, mask


def test_deeplab_structure_from_graph(coral):
    sd, info = T.deeplabv3_mobilenet_v2_state_dict_from_tflite(coral / DEEPLAB)
    assert (info.num_classes, info.output_stride, info.aspp_channels, info.align_corners) == (
        21,
        16,
        256,
        True,
    )
    assert info.conv_geometry["features.14.conv.1.0"] == (1, 1)
    assert info.conv_geometry["features.15.conv.1.0"] == (1, 2)
    assert sd["logits.weight"].shape == (21, 256, 1, 1)


@pytest.fixture(scope="module")
def teacher_labels(coral, bird) -> np.ndarray:
    """PASCAL ids (513, 513) of the teacher on bird_segmentation.bmp, TF's [-1, 1] input."""
    net = pascal_teacher_from_tflite(coral / DEEPLAB, T.TF_SLIM_MEAN, T.TF_SLIM_STD)
    assert net.mean == T.TF_SLIM_MEAN and not net.training
    with torch.no_grad():
        logits = net(_as_tflite_input(bird[0]))
    assert logits.shape == (1, 21, 513, 513)
    return logits.argmax(1)[0].numpy()


def test_deeplab_teacher_agrees_with_mask(teacher_labels, bird):
    mask = bird[1]
    assert PASCAL_VOC_CLASSES[np.bincount(teacher_labels.ravel()).argsort()[-2]] == "bird"
    assert (teacher_labels == mask).mean() >= 0.95  # measured 0.978 (TFLite itself: 0.979)


def test_deeplab_teacher_agrees_with_tflite_interpreter(coral, bird, teacher_labels):
    interp_mod = pytest.importorskip(
        "ai_edge_litert.interpreter", reason="ai-edge-litert (TFLite runtime) not installed"
    )
    it = interp_mod.Interpreter(model_path=str(coral / DEEPLAB))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], bird[0][None])
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])[0]
    assert (teacher_labels == ref).mean() >= 0.99  # measured 0.9986


def test_deeplab_teacher_with_imagenet_normalisation(coral, bird):
    rgb, mask = bird
    net = pascal_teacher_from_tflite(coral / DEEPLAB)  # default: the project's ImageNet mean/std
    assert net.mean == IMAGENET_MEAN and net.std == IMAGENET_STD
    labels = net.predict(_as_imagenet_input(rgb))[0].numpy()
    assert (labels == mask).mean() >= 0.95  # measured 0.978
    nyu = pascal_to_nyu40(labels)
    assert set(np.unique(nyu)) <= {0}  # a bird: unknown to NYUv2, void


def test_tf_same_mobilenet_exports_to_onnx_at_a_fixed_size():
    import io

    import onnxruntime as ort

    torch.manual_seed(0)
    net = mobilenet_v2(tf_same_padding=True).eval()
    x = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        ref = net(x)[-1].numpy()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning: the padding is a constant of this size
        torch.onnx.export(_LastFeature(net), (x,), buf, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert out.shape == ref.shape == (1, 320, 2, 3)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


class _LastFeature(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)[-1]
