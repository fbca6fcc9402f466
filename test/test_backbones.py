"""Backbones (torchvision names, strides, dilation, weight files) and the shared blocks."""

import copy
import io

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from joint_perception.models import backbones as B
from joint_perception.models.blocks import (
    ASPP,
    ConvBNReLU,
    ResidualBlock,
    SeparableConv,
    UpProjection,
    unpool2x,
    upsample_to,
)

X = torch.rand(1, 3, 64, 80)


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def shapes(net, x=X):
    net.eval()
    with torch.no_grad():
        return [tuple(f.shape) for f in net.forward_features(x)]


@pytest.mark.parametrize(
    "name, kw, count, channels",
    [
        # torchvision's counts minus the classifier (fc / classifier.1)
        ("resnet18", {}, 11_689_512 - 513_000, [64, 128, 256, 512]),
        ("resnet50", {}, 25_557_032 - 2_049_000, [256, 512, 1024, 2048]),
        ("vgg16", {}, 14_714_688, [256, 512, 512]),
        ("mobilenet_v2", {"last_conv": True}, 3_504_872 - 1_281_000, [24, 32, 96, 1280]),
    ],
)
def test_parameter_counts_match_torchvision(name, kw, count, channels):
    net = B.build_backbone(name, **kw)
    assert n_params(net) == count
    assert net.channels == channels


def test_resnet_stage_shapes_and_dilation():
    assert shapes(B.resnet18()) == [
        (1, 64, 16, 20),
        (1, 128, 8, 10),
        (1, 256, 4, 5),
        (1, 512, 2, 3),
    ]
    net = B.resnet18(replace_stride_with_dilation=(False, True, True))
    assert net.strides == [4, 8, 8, 8]
    assert [s[2:] for s in shapes(net)] == [(16, 20), (8, 10), (8, 10), (8, 10)]
    assert net.layer4[1].conv1.dilation == (4, 4) and net.layer3[0].conv1.dilation == (1, 1)
    assert B.resnet34(replace_stride_with_dilation=(False, False, True)).strides == [4, 8, 16, 16]
    with pytest.raises(ValueError, match="3 entries"):
        B.resnet18(replace_stride_with_dilation=(True,))


def test_vgg_xception_mobilenet_strides():
    assert shapes(B.vgg16()) == [(1, 256, 16, 20), (1, 512, 8, 10), (1, 512, 4, 5)]
    dil = B.vgg16(dilated=True)
    assert dil.strides == [4, 8, 8] and shapes(dil)[2] == (1, 512, 8, 10)
    assert dil.features[26].dilation == (2, 2)
    x16 = B.xception65(output_stride=16)
    assert shapes(x16) == [(1, 128, 16, 20), (1, 256, 8, 10), (1, 728, 4, 5), (1, 2048, 4, 5)]
    assert [s[2:] for s in shapes(B.xception65(output_stride=8))] == [(16, 20), (8, 10)] + [
        (8, 10)
    ] * 2
    with pytest.raises(ValueError, match="output_stride"):
        B.xception65(output_stride=32)
    mb = B.mobilenet_v2()
    assert shapes(mb) == [(1, 24, 16, 20), (1, 32, 8, 10), (1, 96, 4, 5), (1, 320, 2, 3)]
    assert B.mobilenet_v2(width_mult=0.75).channels == [24, 24, 72, 240]  # torchvision rounding


def test_torchvision_key_names():
    r = B.resnet50().state_dict()
    for k in (
        "conv1.weight",
        "bn1.running_mean",
        "layer1.0.conv1.weight",
        "layer1.0.conv3.weight",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.running_var",
        "layer4.2.bn3.num_batches_tracked",
    ):
        assert k in r, k
    assert "fc.weight" in B.resnet18(include_top=True).state_dict()
    v = B.vgg16().state_dict()
    assert {"features.0.weight", "features.28.bias"} <= set(v) and len(v) == 26
    m = B.mobilenet_v2(last_conv=True).state_dict()
    for k in (
        "features.0.0.weight",
        "features.1.conv.0.0.weight",
        "features.1.conv.1.weight",
        "features.2.conv.0.0.weight",
        "features.2.conv.1.0.weight",
        "features.2.conv.2.weight",
        "features.2.conv.3.running_mean",
        "features.18.0.weight",
    ):
        assert k in m, k


def test_state_dict_file_roundtrip_and_report(tmp_path):
    src = B.resnet18(include_top=True)
    path = tmp_path / "resnet18.pth"
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, path)
    dst = B.resnet18()
    rep = B.load_pretrained(dst, path)
    assert rep.unexpected == ["fc.bias", "fc.weight"] and rep.missing == [] and rep.mismatched == []
    assert torch.equal(dst.layer3[1].conv2.weight, src.layer3[1].conv2.weight)
    with pytest.raises(ValueError, match="resnet18.pth"):
        B.load_pretrained(B.resnet18(), path, strict=True)
    assert B.load_pretrained(B.resnet34(), path).mismatched == []  # layer1.2 etc. missing
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        B.load_pretrained(dst, tmp_path / "nope.pth")
    with pytest.raises(KeyError, match="known: mobilenet_v2"):
        B.build_backbone("resnet7")


def test_blocks_shapes_and_values():
    x = torch.rand(2, 8, 12, 16)
    assert ConvBNReLU(8, 4, stride=2)(x).shape == (2, 4, 6, 8)
    assert SeparableConv(8, 16, dilation=2)(x).shape == (2, 16, 12, 16)
    assert ResidualBlock(8, 8)(x).shape == (2, 8, 12, 16)
    assert isinstance(ResidualBlock(8, 8).shortcut, torch.nn.Identity)
    assert ResidualBlock(8, 16, stride=2)(x).shape == (2, 16, 6, 8)
    a = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert unpool2x(a)[0, 0].tolist() == [[0, 0, 1, 0], [0, 0, 0, 0], [2, 0, 3, 0], [0, 0, 0, 0]]
    assert UpProjection(8, 4)(x).shape == (2, 4, 24, 32)
    assert UpProjection(8, 4, upsample="bilinear")(x, size=(25, 33)).shape == (2, 4, 25, 33)
    with pytest.raises(ValueError, match="doubles"):
        UpProjection(8, 4)(x, size=(25, 33))
    assert ASPP(8, 6, rates=(1, 2, 3))(x).shape == (2, 6, 12, 16)
    # bilinear, half-pixel: upsampling a constant keeps it, a 1x2 ramp 2x gives 0, .25, .75, 1
    ramp = torch.tensor([[[[0.0, 1.0]]]])
    assert upsample_to(ramp, (1, 4))[0, 0, 0].tolist() == [0.0, 0.25, 0.75, 1.0]
    assert upsample_to(x, x) is x
    with pytest.raises(ValueError, match="positive"):
        upsample_to(x, (0, 3))


def test_blocks_export_to_onnx_and_match():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sep = SeparableConv(3, 8, stride=2)
            self.aspp = ASPP(8, 8, rates=(2, 4, 6))
            self.up = UpProjection(8, 4)
            self.res = ResidualBlock(4, 6)

        def forward(self, x):
            y = self.res(self.up(self.aspp(self.sep(x))))
            return upsample_to(y, x)

    net = Net().eval()
    x = torch.rand(1, 3, 30, 40)
    buf = io.BytesIO()
    torch.onnx.export(net, (x,), buf, input_names=["x"], opset_version=17, dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert "ReduceMean" in ops and "GlobalAveragePool" not in ops  # ASPP pooling: plain mean
    got = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy()}
    )[0]
    with torch.no_grad():
        ref = net(x).numpy()
    assert got.shape == (1, 6, 30, 40)
    assert abs(got - ref).max() < 1e-4


def test_calibrate_folded_batchnorm_keeps_the_function_and_fixes_training_mode():
    """A BN that is an identity carrying a folded bias (TFLite import) gets the data's
    statistics: eval output unchanged; training-mode output on the calibration batch equal to
    it (before, batch normalisation changed it completely); ordinary BNs untouched."""
    from joint_perception.models.backbones import calibrate_folded_batchnorm

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 4, 1, bias=False),
        nn.BatchNorm2d(4),
    )
    folded = net[1]
    with torch.no_grad():
        folded.running_var.fill_(1 - folded.eps)
        folded.bias.copy_(torch.linspace(-1, 1, 8))
        net[4].running_mean.fill_(0.3)  # an ordinary, trained BN
    x = 3 * torch.randn(4, 3, 16, 16) + 1
    net.eval()
    before = net(x)
    trained = copy.deepcopy(net).train()
    assert (trained(x) - before).abs().max() > 0.5  # batch statistics destroy the folded weights
    stats4 = net[4].running_mean.clone()
    assert calibrate_folded_batchnorm(net, [x]) == 1
    torch.testing.assert_close(net(x), before, atol=1e-4, rtol=1e-4)
    assert torch.equal(net[4].running_mean, stats4)
    first = net[:2]
    first.train()
    torch.testing.assert_close(first(x), first.eval()(x), atol=1e-3, rtol=1e-3)


def _bn(prefix: str, ch: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        prefix + "weight": torch.rand(ch, generator=g),
        prefix + "bias": torch.rand(ch, generator=g),
        prefix + "running_mean": torch.rand(ch, generator=g),
        prefix + "running_var": torch.rand(ch, generator=g) + 0.5,
        prefix + "num_batches_tracked": torch.tensor(7),
    }


def _sep(prefix: str, cin: int, cout: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """A separable conv in the DeepLab-PyTorch naming: conv1 (depthwise), bn, pointwise."""
    return {
        prefix + "conv1.weight": torch.rand(cin, 1, 3, 3, generator=g),
        **_bn(prefix + "bn.", cin, g),
        prefix + "pointwise.weight": torch.rand(cout, cin, 1, 1, generator=g),
    }


def deeplab_pytorch_xception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """An AlignedXception (output stride 16) state_dict in the naming of
    jfzhang95/pytorch-deeplab-xception, written from its layer description: entry blocks
    1-3 (64->128, 128->256, 256->728; two separable convs + a strided one; block1 starts
    without ReLU), 16 middle blocks (three 728 convs), exit block 20 (728->728, 728->1024,
    1024->1024), each separable conv followed by a BatchNorm in ``rep``; conv3..5 + bn3..5."""
    g = torch.Generator().manual_seed(seed)
    sd = {"conv1.weight": torch.rand(32, 3, 3, 3, generator=g), **_bn("bn1.", 32, g)}
    sd.update({"conv2.weight": torch.rand(64, 32, 3, 3, generator=g), **_bn("bn2.", 64, g)})
    blocks = {1: [(64, 128), (128, 128), (128, 128)], 2: [(128, 256), (256, 256), (256, 256)]}
    blocks[3] = [(256, 728), (728, 728), (728, 728)]
    blocks.update({k: [(728, 728)] * 3 for k in range(4, 20)})
    blocks[20] = [(728, 728), (728, 1024), (1024, 1024)]
    for k, convs in blocks.items():
        i = (
            0 if k == 1 else 1
        )  # rep = [relu, sep, bn, relu, sep, bn, ...]; block1 has no relu first
        for cin, cout in convs:
            sd.update(_sep(f"block{k}.rep.{i}.", cin, cout, g))
            sd.update(_bn(f"block{k}.rep.{i + 1}.", cout, g))
            i += 3
        cin, cout = convs[0][0], convs[-1][1]
        if cin != cout or k <= 3:
            sd[f"block{k}.skip.weight"] = torch.rand(cout, cin, 1, 1, generator=g)
            sd.update(_bn(f"block{k}.skipbn.", cout, g))
    for n, (cin, cout) in zip((3, 4, 5), [(1024, 1536), (1536, 1536), (1536, 2048)], strict=True):
        sd.update(_sep(f"conv{n}.", cin, cout, g))
        sd.update(_bn(f"bn{n}.", cout, g))
    return sd


def test_deeplab_pytorch_xception_checkpoint_loads_completely_with_the_key_map(tmp_path):
    state = deeplab_pytorch_xception_state()
    path = tmp_path / "xception_deeplab.pth"
    torch.save(state, path)
    net = B.xception65()
    n_own = len(net.state_dict())
    # without the map: refused, with the counts and a hint (it used to load 12 of 792 quietly)
    with pytest.raises(ValueError, match=rf"loaded 12 of {n_own} tensors.*pretrained_key_map"):
        B.build_backbone("xception65", pretrained=str(path))
    net = B.build_backbone(
        "xception65", pretrained=str(path), pretrained_key_map="deeplab_xception"
    )
    own = net.state_dict()
    assert len(state) == n_own == 792
    torch.testing.assert_close(
        own["middle.0.units.1.depthwise.weight"], state["block4.rep.1.conv1.weight"]
    )
    torch.testing.assert_close(
        own["middle.15.units.5.bn_point.running_var"], state["block19.rep.8.running_var"]
    )
    torch.testing.assert_close(own["block1.units.0.bn_depth.bias"], state["block1.rep.0.bn.bias"])
    torch.testing.assert_close(own["block3.skip.1.weight"], state["block3.skipbn.weight"])
    torch.testing.assert_close(
        own["exit_block.units.5.pointwise.weight"], state["block20.rep.7.pointwise.weight"]
    )
    torch.testing.assert_close(own["exit_convs.2.bn_point.weight"], state["bn5.weight"])
    # a DeepLabV3+ checkpoint (backbone. prefix, ASPP and decoder keys) loads its backbone
    deeplab = {"backbone." + k: v for k, v in state.items()}
    deeplab["aspp.aspp1.atrous_conv.weight"] = torch.zeros(256, 2048, 1, 1)
    torch.save({"state_dict": deeplab}, tmp_path / "deeplab.pth")
    again = B.build_backbone(
        "xception65",
        pretrained=str(tmp_path / "deeplab.pth"),
        pretrained_key_map="deeplab_xception",
    )
    torch.testing.assert_close(again.state_dict(), own)
    # one tensor too few in the file: strict load names it
    del state["block7.rep.4.pointwise.weight"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"middle.3.units.3.pointwise.weight"):
        B.build_backbone("xception65", pretrained=str(path), pretrained_key_map="deeplab_xception")
    with pytest.raises(KeyError, match="known: deeplab_xception"):
        B.build_backbone("xception65", pretrained=str(path), pretrained_key_map="timm")


def test_build_backbone_loads_torchvision_files_strictly(tmp_path):
    src = B.resnet18(include_top=True)
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "resnet18.pth")  # classifier head, no BN counters: fine
    net = B.build_backbone("resnet18", pretrained=str(tmp_path / "resnet18.pth"))
    torch.testing.assert_close(net.layer4[1].bn2.running_var, src.layer4[1].bn2.running_var)
    with pytest.raises(ValueError, match=r"missing \['layer1.2"):  # ResNet-34 needs more blocks
        B.build_backbone("resnet34", pretrained=str(tmp_path / "resnet18.pth"))
    with pytest.raises(FileNotFoundError, match="docs/data.md"):
        B.build_backbone("resnet18", pretrained=str(tmp_path / "resnet50.pth"))
