"""EfficientNet backbones: real ImageNet weights classify a real photo; weight layouts map both ways."""

from __future__ import annotations

import cv2
import pytest
import torch

from edgeano.data.preprocess import Preprocess
from edgeano.errors import EdgeanoError
from edgeano.models.backbones import LEVEL_CHANNELS, NORMALIZATION, EfficientNet, create_backbone, pretrained
from edgeano.models.backbones import weights as W

CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_lite0_imagenet_weights_classify_chelsea_as_a_cat():
    skdata = pytest.importorskip("skimage.data")
    net, source = pretrained("efficientnet-lite0")
    assert "lukemelas" in source
    mean, std = NORMALIZATION["efficientnet-lite0"]
    pre = Preprocess(size=(224, 224), mean=mean, std=std)
    bgr = cv2.cvtColor(skdata.chelsea(), cv2.COLOR_RGB2BGR)
    x = torch.from_numpy(pre.normalize(pre.batch([bgr])))
    with torch.no_grad():
        p = net(x).softmax(1)[0]
    assert int(p.argmax()) in CAT_CLASSES
    assert float(p[list(CAT_CLASSES)].sum()) > 0.8


@pytest.mark.parametrize("name,params", [("efficientnet-b0", 5_288_548), ("efficientnet-lite0", 4_652_008)])
def test_parameter_counts_match_the_published_models(name, params):
    # torchvision's efficientnet_b0 has 5,288,548 parameters; TF's EfficientNet-Lite0 4.65M.
    assert sum(p.numel() for p in EfficientNet(name).parameters()) == params


def _randomised(net: EfficientNet) -> EfficientNet:
    """Random BN statistics too, so a wrong mapping of any buffer changes the output."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net.eval()


def test_b0_key_mapping_round_trip_torchvision_lukemelas_ours(tmp_path):
    torch.manual_seed(0)
    ref = _randomised(EfficientNet("efficientnet-b0", padding="symmetric", bn_eps=1e-5))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = ref(x)

    tv = W.from_ours(ref.state_dict(), "efficientnet-b0", "torchvision")
    assert len(tv) == len(ref.state_dict()) == 360
    # spot-check torchvision's own names and shapes (stage 1 has no expand conv, so SE is block.1)
    assert tv["features.1.0.block.1.fc1.weight"].shape == (8, 32, 1, 1)
    assert tv["features.2.0.block.0.0.weight"].shape == (96, 16, 1, 1)
    assert tv["features.2.0.block.3.1.running_var"].shape == (24,)
    assert tv["features.8.0.weight"].shape == (1280, 320, 1, 1)
    assert tv["classifier.1.weight"].shape == (1000, 1280)

    ours, layout = W.to_ours(tv, "efficientnet-b0")
    assert layout == "torchvision"
    lm = W.from_ours(ours, "efficientnet-b0", "lukemelas")
    assert lm["_blocks.0._se_reduce.weight"].shape == (8, 32, 1, 1)
    assert lm["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert lm["_bn1.running_mean"].shape == (1280,)
    back, layout = W.to_ours(lm, "efficientnet-b0")
    assert layout == "lukemelas"

    again = EfficientNet("efficientnet-b0", padding="symmetric", bn_eps=1e-5)
    again.load_state_dict(back)
    with torch.no_grad():
        assert torch.equal(again.eval()(x), want)

    # The file path: a torchvision file builds a symmetric-padding, eps-1e-5 network; a lukemelas
    # file one with TF "same" padding and eps 1e-3 (what those weights were trained with).
    torch.save(tv, tmp_path / "efficientnet_b0_rwightman-test.pth")
    net, source = pretrained("efficientnet-b0", str(tmp_path / "efficientnet_b0_rwightman-test.pth"))
    assert (net.padding, net.bn_eps, "torchvision" in source) == ("symmetric", 1e-5, True)
    with torch.no_grad():
        assert torch.equal(net(x), want)
    torch.save(lm, tmp_path / "efficientnet-b0-test.pth")
    net, _ = pretrained("efficientnet-b0", str(tmp_path / "efficientnet-b0-test.pth"))
    assert (net.padding, net.bn_eps) == ("same", 1e-3)


def test_same_padding_matches_tensorflow_rule():
    # 224 input, k=3, s=2: TF pads 0 before and 1 after; k=5: 1 before, 2 after; odd input: symmetric
    from edgeano.models.backbones.efficientnet import _same_pad

    assert _same_pad(224, 224, 3, 2) == (0, 1, 0, 1)
    assert _same_pad(112, 112, 5, 2) == (1, 2, 1, 2)
    assert _same_pad(25, 25, 3, 2) == (1, 1, 1, 1)


def test_forward_features_levels_shapes():
    net = create_backbone("efficientnet-lite0").eval()
    feats = net.forward_features(torch.rand(1, 3, 64, 64), [0, 3, 8])
    assert [f.shape[1] for f in feats] == [LEVEL_CHANNELS[0], LEVEL_CHANNELS[3], LEVEL_CHANNELS[8]]
    assert [f.shape[-1] for f in feats] == [32, 8, 2]


def test_wrong_weights_say_so_in_one_line(tmp_path):
    lite_sd = W.read_state_dict(W.lite0_weights_path())
    with pytest.raises(EdgeanoError, match="no squeeze-excitation"):
        W.to_ours(lite_sd, "efficientnet-b0")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EdgeanoError, match="not a readable"):
        pretrained("efficientnet-lite0", str(tmp_path / "junk.pth"))
    torch.save({"foo.weight": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(EdgeanoError, match="unrecognised"):
        pretrained("efficientnet-lite0", str(tmp_path / "foreign.pth"))


def test_missing_b0_weights_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(EdgeanoError) as e:
        W.b0_weights_path(download=False)
    msg = str(e.value)
    assert "efficientnet_b0_rwightman" in msg and "--weights" in msg and str(tmp_path / "hub") in msg
    assert "\n" not in msg
    # a file in the hub cache is found without any option
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    f = tmp_path / "hub" / "checkpoints" / "efficientnet-b0-355c32eb.pth"
    f.write_bytes(b"")
    assert W.b0_weights_path(download=False) == f
