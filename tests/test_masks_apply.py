"""Applying masks to models (ingest.edit.mask_apply): hooks, exact baking into weights, refusals."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from catalog.mask_file import EdgeCut, Mask, MaskError, ModelIdentity, ModuleMask
from ingest import zoo
from ingest.edit.bake_plan import Edit
from ingest.edit.interventions import prune_edges
from ingest.edit.mask_apply import NotBakeable, apply_mask, bake_mask, check, plan_bake, verify_bake
from ingest.zoo.catfish_mini import CATFISH_MINI_LAYERS, build_catfish_mini

TOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine this is faster and far steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def randomise_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, so pruning visibly changes outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                    m.bias.copy_(0.1 + 0.2 * torch.randn(n, generator=g))
    return model.eval()


def widths_of(model: nn.Module, paths, x: torch.Tensor) -> dict[str, int]:
    widths = {}
    handles = [
        model.get_submodule(p).register_forward_hook(lambda _m, _i, o, p=p: widths.__setitem__(p, o.shape[1]))
        for p in paths
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return widths


def circuit_mask(model: nn.Module, name: str, channels: dict[str, list[int]], x: torch.Tensor) -> Mask:
    widths = widths_of(model, channels, x)
    return Mask(
        "circuit",
        ModelIdentity(name, zoo.weights_sha256(model)),
        {p: ModuleMask(tuple(c), widths[p]) for p, c in channels.items()},
    )


def outputs(model: nn.Module, x: torch.Tensor, mask: Mask | None = None) -> torch.Tensor:
    with torch.no_grad():
        if mask is None:
            return model(x)
        with apply_mask(model, mask):
            return model(x)


def baked_outputs(model: nn.Module, mask: Mask, x: torch.Tensor) -> torch.Tensor:
    state = bake_mask(model, mask)
    plain = copy.deepcopy(model)
    plain.load_state_dict(state)
    assert not plain._forward_hooks and not model._forward_hooks
    with torch.no_grad():
        return plain(x)


@pytest.fixture(scope="module")
def catfish():
    torch.manual_seed(0)
    model = randomise_bn(build_catfish_mini())
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    return model, x


# channels that fall in every inception branch (mixed3a: 1x1 0-15 | 3x3 16-47 | 5x5 48-55 | pool 56-63)
CATFISH_CHANNELS = {
    "stem": [0, 9, 33, 63],
    "mixed3a": [2, 20, 50, 60],
    "mixed3b": [0, 30, 75, 90],
    "mixed4a": [5, 40, 100, 120],
    "mixed4b": [1, 64, 99, 127],
}


@pytest.mark.parametrize("layers", [[name] for name in CATFISH_MINI_LAYERS] + [list(CATFISH_MINI_LAYERS)])
def test_baked_catfish_mini_equals_hook_pruned(catfish, layers):
    model, x = catfish
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = circuit_mask(model, "catfish-mini", {p: CATFISH_CHANNELS[p] for p in layers}, x)
    clean, hooked = outputs(model, x), outputs(model, x, mask)
    baked = baked_outputs(model, mask, x)
    assert (baked - hooked).abs().max() <= TOL
    assert (hooked - clean).abs().max() > 1e-3  # the mask does something
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # model untouched
    assert set(plan_bake(model, mask).routes.values()) == {"producer"}


def test_hooks_zero_exactly_the_named_channels(catfish):
    model, x = catfish
    mask = circuit_mask(model, "catfish-mini", {"mixed3b": [0, 30, 75]}, x)
    seen = {}
    h = model.mixed3b.register_forward_hook(lambda _m, _i, o: seen.__setitem__("clean", o))
    try:
        outputs(model, x)
    finally:
        h.remove()
    with apply_mask(model, mask):
        h = model.mixed3b.register_forward_hook(
            lambda _m, _i, o: seen.__setitem__("pruned", o)
        )  # runs after the mask's
        try:
            outputs(model, x)
        finally:
            h.remove()
    zeroed = seen["pruned"][:, [0, 30, 75]]
    assert torch.all(zeroed == 0) and seen["clean"][:, [0, 30, 75]].abs().sum() > 0
    keep = [c for c in range(96) if c not in (0, 30, 75)]
    assert torch.equal(seen["pruned"][:, keep], seen["clean"][:, keep])
    assert not model.mixed3b._forward_hooks and not model._forward_pre_hooks


def test_baked_googlenet_equals_hook_pruned_at_64px():
    spec = zoo.get_spec("googlenet")
    torch.manual_seed(0)
    model = randomise_bn(spec.build())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    assert outputs(model, x).shape == (2, 1000)  # adaptive avgpool: 64x64 works
    channels = {"inception3a": [0, 70, 200, 250], "inception4c": list(range(0, 512, 9)), "inception5b": [3, 500, 900]}
    mask = circuit_mask(model, "googlenet", channels, x)
    clean, hooked = outputs(model, x), outputs(model, x, mask)
    assert (baked_outputs(model, mask, x) - hooked).abs().max() <= TOL
    assert (hooked - clean).abs().max() > 1e-4


def test_resnet_stages_bake_through_their_readers_and_blocks_with_identity_are_refused():
    torch.manual_seed(0)
    model = randomise_bn(torchvision.models.resnet18(weights=None))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    mask = circuit_mask(
        model, "resnet18", {"layer1": [1, 5], "layer2": [3], "layer3": [7], "layer4": [0, 9], "layer2.0": [11]}, x
    )
    plan = plan_bake(model, mask)
    # a stage ends in relu(bn + identity): only its readers (next stage's conv1 and downsample, fc) can ignore it
    assert plan.routes == {
        "layer1": "consumer",
        "layer2": "consumer",
        "layer3": "consumer",
        "layer4": "consumer",
        "layer2.0": "producer",
    }
    assert "fc.weight" in plan.params() and "layer2.0.downsample.1.weight" in plan.params()
    hooked = outputs(model, x, mask)
    assert (baked_outputs(model, mask, x) - hooked).abs().max() <= TOL
    assert (hooked - outputs(model, x)).abs().max() > 1e-3

    refused = circuit_mask(model, "resnet18", {"layer1.0": [2]}, x)
    with pytest.raises(NotBakeable) as err:
        bake_mask(model, refused)
    msg = str(err.value)
    assert (
        "cannot bake layer1.0 exactly" in msg
        and "identity/skip path" in msg
        and "writes a program that carries the mask" in msg
    )
    # the hooks still apply it
    assert (outputs(model, x, refused) - outputs(model, x)).abs().max() > 0


class Tiny(nn.Module):
    """A plain conv stack: BN without affine weights, a grouped conv, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8, affine=False),
            nn.ReLU(),
            nn.Conv2d(8, 6, 3, padding=1, groups=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6, 5))

    def forward(self, x):
        return self.head(self.pool(self.features(x)))


@pytest.mark.parametrize(
    "channels, route",
    [
        ({"features.2": [1, 6]}, "consumer"),  # BN without affine: its grouped reader ignores the channels
        ({"features.4": [0, 4]}, "producer"),  # conv rows
        ({"features.5": [5]}, "producer"),  # through maxpool and relu to the conv
        ({"pool": [2]}, "producer"),
        ({"features": [3]}, "producer"),
    ],
)
def test_plain_conv_stack_leaves_and_grouped_readers(channels, route):
    torch.manual_seed(0)
    model = randomise_bn(Tiny())
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    mask = circuit_mask(model, "tiny", channels, x)
    assert set(plan_bake(model, mask).routes.values()) == {route}
    hooked = outputs(model, x, mask)
    assert (baked_outputs(model, mask, x) - hooked).abs().max() <= TOL
    assert (hooked - outputs(model, x)).abs().max() > 1e-4
    assert verify_bake(model, mask, bake_mask(model, mask), x) <= TOL


def edge_mask(model: nn.Module, src: str, dst: str, src_ch, dst_ch, x) -> Mask:
    w = widths_of(model, [src, dst], x)
    return Mask(
        "edge",
        ModelIdentity("catfish-mini", zoo.weights_sha256(model)),
        {src: ModuleMask(tuple(src_ch), w[src]), dst: ModuleMask(tuple(dst_ch), w[dst])},
        edge=EdgeCut(src, dst, tuple(src_ch), tuple(dst_ch)),
    )


def test_edge_mask_matches_interventions_and_the_plain_reference(catfish):
    model, x = catfish
    src_ch, dst_ch = [2, 20, 50, 60], [0, 30, 75, 90]
    mask = edge_mask(model, "mixed3a", "mixed3b", src_ch, dst_ch, x)
    got = outputs(model, x, mask)
    with torch.no_grad():
        with prune_edges(model, ["mixed3a", "mixed3b"], [src_ch, dst_ch]):
            via_interventions = model(x)
        # docs/method.md, "Interventions" by hand: mixed3b twice, circuit channels from the pass with mixed3a's zeroed
        a = model.mixed3a(model.stem(x))
        b = model.mixed3b(a)
        a_cut = a.clone()
        a_cut[:, src_ch] = 0
        b[:, dst_ch] = model.mixed3b(a_cut)[:, dst_ch]
        h = model.mixed4b(model.mixed4a(model.pool3(b)))
        reference = model.fc(model.dropout(torch.flatten(model.avgpool(h), 1)))
    assert torch.equal(got, via_interventions)
    assert (got - reference).abs().max() <= TOL
    assert (got - outputs(model, x)).abs().max() > 1e-4
    with pytest.raises(NotBakeable, match="edge mask cannot be baked"):
        bake_mask(model, mask)


def test_mismatches_are_refused_with_what_differs(catfish):
    model, x = catfish
    mask = circuit_mask(model, "catfish-mini", {"mixed3a": [1, 2]}, x)
    check(model, mask, model_name="catfish-mini", example=x)  # fits

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.fc.bias.add_(1.0)
    other_sha = zoo.weights_sha256(other)
    with pytest.raises(MaskError) as err:
        bake_mask(other, mask)
    msg = str(err.value)
    assert f"mask was made for weights {mask.model.weights_sha256[:12]}…" in msg
    assert f"the model's weights are {other_sha[:12]}…" in msg and "`weights=`" in msg
    with pytest.raises(MaskError, match="mask was made for weights"):
        with apply_mask(other, mask):
            pass

    with pytest.raises(MaskError, match="mask was made for model 'catfish-mini', not 'googlenet'"):
        check(model, mask, model_name="googlenet")

    wrong_name = Mask("circuit", mask.model, {"mixed3x": ModuleMask((1,), 64)})
    with pytest.raises(MaskError, match=r"does not have: mixed3x \(did you mean .*mixed3a"):
        check(model, wrong_name)

    wrong_width = Mask("circuit", mask.model, {"mixed3a": ModuleMask((1, 70), 96)})
    with pytest.raises(MaskError, match="mixed3a has 64 channels but the mask was made for a width of 96"):
        check(model, wrong_width, example=x)
    with pytest.raises(MaskError, match="mixed3a has 64 channels but the mask was made for a width of 96"):
        bake_mask(model, wrong_width)
    with pytest.raises(MaskError, match="mixed3a has 64 channels"):
        outputs(model, x, wrong_width)
    assert not model.mixed3a._forward_hooks  # removed even when the forward raised


def test_inceptionv1_blocks_whose_convs_live_on_the_parent():
    """Lucid's layout keeps a block's convs in a tuple, registered on the model, not the block."""
    spec = zoo.get_spec("inceptionv1")
    torch.manual_seed(0)
    model = spec.build().eval()
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(6))
    mask = circuit_mask(model, "inceptionv1", {"mixed3b": [0, 130, 300, 470], "mixed4c": [447]}, x)
    plan = plan_bake(model, mask)
    assert plan.routes == {"mixed3b": "producer", "mixed4c": "producer"}
    # mixed4c = 1x1 128 | 3x3 256 | 5x5 64 | pool 64: channel 447 is the 5x5 branch's channel 63
    assert Edit("mixed4c_5x5_pre_relu_conv.weight", 0, 63) in plan.edits
    assert Edit("mixed4c_5x5_pre_relu_conv.bias", 0, 63) in plan.edits
    hooked = outputs(model, x, mask)
    assert (baked_outputs(model, mask, x) - hooked).abs().max() <= TOL
    assert (hooked - outputs(model, x)).abs().max() > 0


class Skip(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)) + x)  # the block input is added back in


class Opaque(nn.Module):
    """A head fx cannot trace (it rounds a shape)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc = nn.Linear(c, 3)

    def forward(self, x):
        scale = round(x.shape[-1] ** 0.5)
        return self.fc(x.mean((2, 3)) * scale)


class TinyRes(nn.Module):
    def __init__(self, reader: str) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = Skip(8)
        self.block2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = Opaque(8)
        self.reader = reader

    def forward(self, x):
        h = self.block1(self.stem(x))
        return self.head(self.block2(h) if self.reader == "block2" else h)


def test_untraceable_parts_only_matter_where_they_read_the_masked_module():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(7))
    model = randomise_bn(TinyRes(reader="block2"))
    mask = circuit_mask(model, "tiny-res", {"block1": [2, 5], "block2": [1]}, x)
    assert plan_bake(model, mask).routes == {"block1": "consumer", "block2": "producer"}
    hooked = outputs(model, x, mask)
    assert (baked_outputs(model, mask, x) - hooked).abs().max() <= TOL
    assert (hooked - outputs(model, x)).abs().max() > 1e-4

    model = randomise_bn(TinyRes(reader="head"))
    mask = circuit_mask(model, "tiny-res", {"block1": [2]}, x)
    with pytest.raises(NotBakeable) as err:
        plan_bake(model, mask)
    msg = str(err.value)
    assert "cannot bake block1 exactly" in msg and "identity/skip path" in msg and "read by head" in msg
