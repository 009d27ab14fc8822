"""Model zoo: every adapter builds, runs, captures its layers; weights, user factories, preprocessing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from catalog.errors import CircuitsError
from ingest import zoo
from ingest.cla.capture import UnknownLayer, capture, capture_layers
from ingest.zoo import (
    ModelLoadError,
    RandomInitWarning,
    UnknownModel,
    WeightsError,
    ZooError,
    get_spec,
    load_model,
    preprocess,
    weights_sha256,
)
from ingest.zoo.inceptionv1 import LAYERS as IV1_LAYERS

WIDTHS = {
    "googlenet": [256, 480, 512, 512, 512, 528, 832, 832, 1024],
    "resnet50": [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3,  # every bottleneck block's output
    "inceptionv1": [256, 480, 508, 512, 512, 528, 832, 832, 1024],  # Lucid's, so mixed4c:447 matches
    "clip-rn50": [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3,
}
OUTPUTS = {"googlenet": 1000, "resnet50": 1000, "inceptionv1": 1008, "clip-rn50": 1024}


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """No real library cache may leak into the tests (and nothing is ever downloaded)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def load_random(name, **kwargs):
    with pytest.warns(RandomInitWarning, match="random-init"):
        return load_model(name, **kwargs)


def test_available_models():
    assert zoo.available_models() == [
        "catfish-mini",
        "googlenet",
        "resnet50",
        "inceptionv1",
        "clip-rn50",
        "efficientnet-lite0",
        "typo-mini",
        "vit-b-16",
        "typo-vit",
        "vit-b-32",
    ]


@pytest.mark.parametrize("name", ["googlenet", "resnet50", "inceptionv1", "clip-rn50"])
def test_adapter_builds_runs_and_captures_its_layers(name):
    loaded = load_random(name)
    assert loaded.weights_source == "random-init"
    assert not loaded.module.training
    spec = loaded.spec
    assert loaded.layers == spec.layers and len(spec.layers) == len(WIDTHS[name])
    x = torch.randn(1, 3, 64, 64)  # low resolution keeps this fast
    cap = capture_layers(loaded.module, list(loaded.layers), x)  # also checks each layer feeds the next
    assert [t.shape[1] for t in cap.leaves] == WIDTHS[name]
    with torch.no_grad():
        assert loaded.module(x).shape == (1, OUTPUTS[name])
    assert all(not m._forward_hooks for m in loaded.module.modules())
    if spec.labels is not None:
        assert len(spec.labels) == OUTPUTS[name]
    assert preprocess(spec, np.zeros((1, 10, 10, 3), np.uint8)).shape == (1, 3, spec.input_size, spec.input_size)


def test_catfish_mini_adapter():
    from ingest.zoo import catfish_mini as cm

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model("catfish-mini")
    if cm.WEIGHTS_PATH.is_file():
        assert loaded.weights_source == "bundled:catfish_mini.pt"
    else:
        assert loaded.weights_source == "random-init"
        assert any(issubclass(w.category, RandomInitWarning) for w in caught)
    assert loaded.layers == tuple(cm.CATFISH_MINI_LAYERS)
    assert loaded.spec.labels == tuple(cm.CLASS_NAMES)
    x = torch.randn(2, 3, cm.INPUT_SIZE, cm.INPUT_SIZE)
    capture_layers(loaded.module, list(loaded.layers), x)
    with torch.no_grad():
        assert loaded.module(x).shape == (2, len(cm.CLASS_NAMES))
    # The zoo's preprocessing equals the model module's own on images of its size.
    imgs = np.random.default_rng(0).integers(0, 256, (2, cm.INPUT_SIZE, cm.INPUT_SIZE, 3), dtype=np.uint8)
    assert torch.allclose(preprocess(loaded.spec, imgs), cm.preprocess(imgs), atol=1e-6)


@pytest.mark.parametrize(
    "name",
    [
        "catfish-mini",
        "inceptionv1",
        "googlenet",
        # Residual stages take CLA's generic autograd path: ~15 s per pair on a 2-core CPU.
        pytest.param("resnet50", marks=pytest.mark.slow),
        pytest.param("clip-rn50", marks=pytest.mark.slow),
    ],
)
def test_one_attribution_pair(name):
    from ingest.cla.attribution import attribute

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        loaded = load_model(name)
    size = 64 if name == "catfish-mini" else 32  # 32×32: the first block pair is 4×4 or 8×8
    x = torch.randn(1, 3, size, size)
    pair = list(loaded.layers[:2])
    (s,) = attribute(loaded.module, pair, x, device="cpu")
    assert s.shape == (WIDTHS.get(name, [s.shape[0], s.shape[1]])[0], WIDTHS.get(name, [0, s.shape[1]])[1])
    assert s.dtype == np.float32 and np.all(np.isfinite(s)) and np.all(s >= 0) and s.sum() > 0


def lucent_reference(net, x):
    """InceptionV1's forward written the way Lucent writes it: explicit pads, functional ops."""

    def conv(name, t, pad=0):
        c = getattr(net, f"{name}_pre_relu_conv")
        return F.relu(F.conv2d(F.pad(t, (pad,) * 4) if pad else t, c.weight, c.bias))

    def pool2(t):
        return F.max_pool2d(F.pad(t, (0, 1, 0, 1), value=float("-inf")), 3, 2)

    x = F.relu(
        F.conv2d(F.pad(x, (2, 3, 2, 3)), net.conv2d0_pre_relu_conv.weight, net.conv2d0_pre_relu_conv.bias, stride=2)
    )
    x = F.local_response_norm(pool2(x), size=9, alpha=9.99999974738e-05, beta=0.5, k=1)
    x = conv("conv2d2", conv("conv2d1", x), pad=1)
    x = pool2(F.local_response_norm(x, size=9, alpha=9.99999974738e-05, beta=0.5, k=1))
    blocks = {}
    for name in IV1_LAYERS:
        if name in ("mixed4a", "mixed5a"):
            x = pool2(x)
        pooled = F.max_pool2d(F.pad(x, (1, 1, 1, 1), value=float("-inf")), 3, 1)
        x = torch.cat(
            [
                conv(f"{name}_1x1", x),
                conv(f"{name}_3x3", conv(f"{name}_3x3_bottleneck", x), pad=1),
                conv(f"{name}_5x5", conv(f"{name}_5x5_bottleneck", x), pad=2),
                conv(f"{name}_pool_reduce", pooled),
            ],
            1,
        )
        blocks[name] = x
    return blocks, net.softmax2_pre_activation_matmul(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("size", [40, 49])  # even and odd sizes: the SAME pools pad asymmetrically
def test_inceptionv1_equals_a_lucent_style_reference(size):
    net = load_random("inceptionv1").module
    x = torch.randn(1, 3, size, size) * 60
    with torch.no_grad(), capture(net, list(IV1_LAYERS)) as cap:
        logits = net(x)
        blocks, ref = lucent_reference(net, x)
    for name, got in zip(IV1_LAYERS, cap.leaf_list()):
        assert got.shape == blocks[name].shape
        torch.testing.assert_close(got, blocks[name], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4)


def test_inceptionv1_matches_lucids_layout():
    from ingest.zoo.inceptionv1 import WIDTHS as IV1_WIDTHS

    loaded = load_random("inceptionv1")
    net = loaded.module
    assert list(IV1_WIDTHS.values()) == WIDTHS["inceptionv1"]
    sd = net.state_dict()
    # Key names of the common PyTorch port of Lucid's weights (Lucent), so they load as is.
    assert sd["conv2d0_pre_relu_conv.weight"].shape == (64, 3, 7, 7)
    assert sd["mixed4a_3x3_pre_relu_conv.weight"].shape == (204, 96, 3, 3)
    assert sd["mixed4c_5x5_pre_relu_conv.weight"].shape == (64, 24, 5, 5)
    assert sd["softmax2_pre_activation_matmul.weight"].shape == (1008, 1024)
    assert len(sd) == 2 * (3 + 9 * 6 + 1)
    # Branch order 1×1 | 3×3 | 5×5 | pool: mixed4c 384…447 is the 5×5 branch.
    with torch.no_grad():
        net.mixed4c_5x5_pre_relu_conv.weight.zero_()
        net.mixed4c_5x5_pre_relu_conv.bias.fill_(-1.0)
        net.mixed4c_1x1_pre_relu_conv.bias.fill_(1.0)
        net.mixed4c_3x3_pre_relu_conv.bias.fill_(1.0)
        net.mixed4c_pool_reduce_pre_relu_conv.bias.fill_(1.0)
    # At 224×224 the block outputs have Lucid's spatial sizes.
    with capture(net, ["mixed3a", "mixed4a", "mixed4c", "mixed5b"]) as cap, torch.no_grad():
        net(torch.rand(1, 3, 224, 224) * 255 - 117)
    leaves = cap.leaf_list()
    assert [tuple(t.shape[2:]) for t in leaves] == [(28, 28), (14, 14), (14, 14), (7, 7)]
    m4c = leaves[2][0]
    dead = (m4c.flatten(1) == 0).all(dim=1)
    assert dead[384:448].all() and not dead[:384].any() and not dead[448:].any()


def test_clip_rn50_has_open_clip_keys_and_loads_a_full_clip_state_dict(tmp_path):
    loaded = load_random("clip-rn50")
    sd = loaded.module.state_dict()
    expected = {
        "conv1.weight": (32, 3, 3, 3),
        "conv3.weight": (64, 32, 3, 3),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.downsample.1.running_mean": (512,),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "attnpool.positional_embedding": (50, 2048),
        "attnpool.q_proj.weight": (2048, 2048),
        "attnpool.c_proj.weight": (1024, 2048),
    }
    assert {k: tuple(sd[k].shape) for k in expected} == expected
    assert not any("avgpool" in k or "act" in k for k in sd)  # parameter-free modules, as in open_clip
    # A full CLIP state dict (visual. + text tower) loads after stripping the prefix.
    full = {f"visual.{k}": v + 1 if v.is_floating_point() else v for k, v in sd.items()}
    full["transformer.resblocks.0.attn.in_proj_weight"] = torch.zeros(3, 3)
    full["logit_scale"] = torch.tensor(4.6)
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(full, path)
    again = load_model("clip-rn50", weights=path)
    assert again.weights_source == f"file:{path.resolve()}"
    assert torch.equal(again.module.state_dict()["conv1.weight"], sd["conv1.weight"] + 1)
    # The positional embedding is used as is at 224 (and resized only at other resolutions).
    pool = again.module.attnpool
    assert pool._positional(7, 7) is pool.positional_embedding
    assert pool._positional(2, 2).shape == (5, 2048)


def test_random_init_is_seeded_and_warned():
    a = load_random("inceptionv1")
    b = load_random("inceptionv1")
    assert a.weights_sha256 == b.weights_sha256 == weights_sha256(b.module)


FACTORY_FILE = """
import torch
from torch import nn

def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 2))

def not_a_module():
    return 3
"""


@pytest.fixture
def factory(tmp_path):
    path = tmp_path / "mynet.py"
    path.write_text(FACTORY_FILE)
    return str(path)


def test_user_factory_from_a_file_and_weight_round_trip(factory, tmp_path):
    loaded = load_random(f"{factory}:make", layers=["1", "3"])
    assert loaded.layers == ("1", "3") and loaded.spec.architecture == "user:mynet.py:make"
    with torch.no_grad():
        for p in loaded.module.parameters():
            p.add_(torch.randn_like(p))
    sha = weights_sha256(loaded.module)
    assert sha != loaded.weights_sha256  # the hash sees a change of values
    sd = loaded.module.state_dict()
    for wrap, fname in [
        (lambda d: d, "plain.pt"),
        (lambda d: {"state_dict": d, "epoch": 3}, "ckpt.pth"),
        (lambda d: {f"module.{k}": v for k, v in d.items()}, "ddp.pt"),
    ]:
        torch.save(wrap(sd), tmp_path / fname)
        again = load_model(f"{factory}:make", weights=tmp_path / fname, layers=["1", "3"])
        assert again.weights_sha256 == sha
        assert again.weights_source == f"file:{(tmp_path / fname).resolve()}"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    assert load_model(f"{factory}:make", weights=tmp_path / "w.safetensors", layers=["1", "3"]).weights_sha256 == sha
    x = torch.randn(2, 3, 8, 8)
    cap = capture_layers(loaded.module, ["1", "3"], x)
    assert [t.shape[1] for t in cap.leaves] == [4, 5]


def test_module_factory_syntax():
    loaded = load_random("ingest.zoo.inceptionv1:build_inceptionv1", layers=["mixed3a", "mixed3b"])
    assert loaded.spec.architecture == "user:ingest.zoo.inceptionv1:build_inceptionv1"


def test_weights_errors_name_the_file(factory, tmp_path):
    name = f"{factory}:make"
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(name, weights=tmp_path / "nope.pt", layers=["1"])
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="garbage.pt"):
        load_model(name, weights=bad, layers=["1"])
    whole = tmp_path / "whole_module.pt"
    torch.save(nn.Linear(2, 2), whole)  # a pickled module: refused by weights_only loading
    with pytest.raises(WeightsError, match="whole_module.pt"):
        load_model(name, weights=whole, layers=["1"])
    other = tmp_path / "other.pt"
    torch.save({"0.weight": torch.zeros(4, 3, 5, 5), "extra": torch.zeros(1)}, other)
    with pytest.raises(WeightsError, match=r"other\.pt does not fit .*missing.*unexpected \(extra\).*another shape"):
        load_model(name, weights=other, layers=["1"])
    notdict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(WeightsError, match="list.pt does not hold a state dict"):
        load_model(name, weights=notdict, layers=["1"])


def test_cached_torchvision_checkpoint_is_used_without_aux_heads(tmp_path):
    from torchvision.models import googlenet

    ref = googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / "googlenet-1378be20.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomInitWarning)
        loaded = load_model("googlenet")
    assert loaded.weights_source == f"cache:{ckpt}"
    assert torch.equal(loaded.module.state_dict()["fc.weight"], ref.state_dict()["fc.weight"])
    assert not any(k.startswith("aux") for k in loaded.module.state_dict())


def test_user_factory_errors(factory, tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        get_spec(str(tmp_path / "missing.py") + ":make")
    with pytest.raises(ModelLoadError, match="no callable 'mak'.*make"):
        get_spec(f"{factory}:mak")
    with pytest.raises(ModelLoadError, match="not a torch.nn.Module"):
        load_model(f"{factory}:not_a_module", layers=["x"])
    with pytest.raises(ModelLoadError, match="cannot import module"):
        get_spec("no_such_package_xyz.mod:make")
    with pytest.raises(ZooError, match="no default layers"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        load_model(f"{factory}:make")
    with pytest.raises(UnknownLayer, match="did you mean"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomInitWarning)
        load_model(f"{factory}:make", layers=["1", "33"])


def test_unknown_model_lists_names_and_syntax():
    with pytest.raises(UnknownModel, match=r"did you mean googlenet\?.*clip-rn50.*file\.py:factory") as e:
        get_spec("googlenett")
    assert isinstance(e.value, CircuitsError) and "\n" not in str(e.value)
    with pytest.raises(UnknownModel, match="not valid"):
        get_spec(":make")


def test_weights_sha256_is_deterministic_and_content_sensitive():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    b.load_state_dict(a.state_dict())
    assert weights_sha256(a) == weights_sha256(b)
    with torch.no_grad():
        b[0].bias[2] += 1e-6
    assert weights_sha256(a) != weights_sha256(b)
    assert len(weights_sha256(a)) == 64


def test_preprocess_reference_and_inputs():
    spec = zoo.ModelSpec(
        name="t",
        architecture="t",
        build=nn.Identity,
        layers=(),
        input_size=16,
        mean=(0.5, 0.25, 0.0),
        std=(0.5, 0.25, 1.0),
    )
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    x = preprocess(spec, imgs)
    ref = (
        torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255 - torch.tensor([0.5, 0.25, 0.0])[:, None, None]
    ) / torch.tensor([0.5, 0.25, 1.0])[:, None, None]
    assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x, ref, atol=1e-6)
    # PIL images and lists of arrays give the same tensor.
    assert torch.equal(preprocess(spec, [Image.fromarray(a) for a in imgs]), x)
    assert torch.equal(preprocess(spec, list(imgs)), x)
    # Other sizes: shorter side resized, centre cropped (a 40×80 red|green|blue image keeps green).
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :20, 0] = 255
    wide[:, 20:60, 1] = 255
    wide[:, 60:, 2] = 255
    y = (
        preprocess(spec, [wide])[0] * torch.tensor([0.5, 0.25, 1.0])[:, None, None]
        + torch.tensor([0.5, 0.25, 0.0])[:, None, None]
    )
    assert y.shape == (3, 16, 16)
    assert torch.allclose(y[:, :, 2:14], torch.tensor([0.0, 1.0, 0.0])[:, None, None].expand(3, 16, 12), atol=1e-5)
    # A constant image stays constant through resizing.
    z = preprocess(spec, np.full((1, 33, 47, 3), 51, np.uint8))
    assert torch.allclose(
        z,
        ((torch.tensor([0.2, 0.2, 0.2]) - torch.tensor([0.5, 0.25, 0.0])) / torch.tensor([0.5, 0.25, 1.0]))[
            None, :, None, None
        ].expand(1, 3, 16, 16),
        atol=1e-5,
    )
    with pytest.raises(ZooError, match="uint8"):
        preprocess(spec, np.zeros((1, 16, 16, 3), np.int32))
    with pytest.raises(ZooError, match=r"outside \[0, 1\]"):
        preprocess(spec, np.full((1, 16, 16, 3), 2.0, np.float32))
    with pytest.raises(ZooError, match="no images"):
        preprocess(spec, [])


def test_register_is_a_one_liner_and_load_model_uses_it(monkeypatch):
    from ingest.zoo import ModelSpec, available_models, register, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # leave the zoo as it was
    builtin = available_models()
    assert builtin[:5] == ["catfish-mini", "googlenet", "resnet50", "inceptionv1", "clip-rn50"]
    register(
        "tiny-test",
        lambda: ModelSpec(
            name="tiny-test",
            architecture="two convs",
            layers=("0", "2"),
            input_size=8,
            mean=(0.5,) * 3,
            std=(0.5,) * 3,
            build=lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1)),
        ),
    )
    assert available_models() == builtin + ["tiny-test"]
    with pytest.warns(RandomInitWarning):
        loaded = load_model("tiny-test")
    assert loaded.layers == ("0", "2") and loaded.weights_source == "random-init"
    x = preprocess(loaded.spec, [np.zeros((8, 8, 3), np.uint8)])
    assert loaded.module(x).shape == (1, 2, 8, 8)
