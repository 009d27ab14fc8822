"""`Preprocessing`: a model's input as its spec says (size or keep, crop|stretch, mean/std or
none, channels), parsing of the CLI forms, provenance round trip, user declarations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ingest import zoo
from ingest.zoo import ModelLoadError, Preprocessing, PreprocessingError, ZooError, preprocess
from ingest.zoo.preprocessing import IMAGENET, parse_input_size, parse_normalize
from ingest.zoo.user import read_class_names

RNG = np.random.default_rng(3)


def test_default_is_no_resize_no_normalisation():
    imgs = RNG.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)
    x = preprocess(Preprocessing(), imgs)
    assert x.shape == (2, 3, 20, 30) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)


def test_uint16_and_float_arrays_and_pil_modes():
    a16 = RNG.integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    assert torch.allclose(
        preprocess(Preprocessing(), [a16])[0], torch.from_numpy(a16 / 65535.0).permute(2, 0, 1).float()
    )
    f = RNG.random((4, 5, 3)).astype(np.float32)
    assert torch.allclose(preprocess(Preprocessing(), [f])[0], torch.from_numpy(f).permute(2, 0, 1))
    grey16 = Image.fromarray(RNG.integers(0, 65536, (4, 5), dtype=np.uint16))  # mode I;16
    x = preprocess(Preprocessing(), [grey16])[0]
    ref = np.round(np.asarray(grey16, np.float64) * 255 / 65535) / 255
    assert torch.allclose(x, torch.from_numpy(ref).float().expand(3, 4, 5), atol=1e-6)


def test_stretch_and_crop():
    wide = np.zeros((10, 40, 3), np.uint8)
    wide[:, :20] = 255  # left half white
    crop = preprocess(Preprocessing(size=10), [wide])[0]
    stretch = preprocess(Preprocessing(size=10, resize="stretch"), [wide])[0]
    assert crop.shape == stretch.shape == (3, 10, 10)
    assert torch.allclose(crop[:, :, :5].mean(), torch.tensor(1.0), atol=0.05)  # centre: white | black
    assert torch.allclose(stretch[:, :, :4], torch.ones(3, 10, 4), atol=1e-5)  # whole width squeezed
    assert torch.allclose(stretch[:, :, 6:], torch.zeros(3, 10, 4), atol=1e-5)


def test_one_channel_is_luma_and_normalised_per_channel():
    img = RNG.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    pp = Preprocessing(channels=1, mean=(0.5,), std=(0.25,))
    x = preprocess(pp, [img])
    luma = (img.astype(np.float64) / 255) @ np.array([0.299, 0.587, 0.114])
    assert x.shape == (1, 1, 6, 6)
    assert torch.allclose(x[0, 0], torch.from_numpy((luma - 0.5) / 0.25).float(), atol=1e-5)
    rgb = preprocess(Preprocessing(mean=IMAGENET[0], std=IMAGENET[1]), [img])[0]
    ref = (
        torch.from_numpy(img).permute(2, 0, 1).float() / 255 - torch.tensor(IMAGENET[0])[:, None, None]
    ) / torch.tensor(IMAGENET[1])[:, None, None]
    assert torch.allclose(rgb, ref, atol=1e-6)


def test_mixed_sizes_with_keep_are_refused_naming_the_options():
    with pytest.raises(PreprocessingError, match=r"2 different sizes.*`input_size=` N.*`resize=`"):
        preprocess(Preprocessing(), [np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)])
    assert preprocess(Preprocessing(size=8), [np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)]).shape == (
        2,
        3,
        8,
        8,
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("none", (None, None)),
        ("imagenet", IMAGENET),
        ("0.5,0.5,0.5:0.25,0.25,0.25", ((0.5,) * 3, (0.25,) * 3)),
        ("0.1:0.2", ((0.1,), (0.2,))),
    ],
)
def test_parse_normalize(text, expected):
    assert parse_normalize(text) == expected


@pytest.mark.parametrize("bad", ["0.5,0.5", "a,b:c", ":0.2"])
def test_parse_normalize_errors_are_one_line(bad):
    with pytest.raises(PreprocessingError) as e:
        parse_normalize(bad)
    assert "\n" not in str(e.value) and "`normalize=`" in str(e.value)


def test_parse_input_size_and_validation():
    assert parse_input_size("keep") is None and parse_input_size("64") == 64 and parse_input_size(32) == 32
    for bad in ("big", "0", "-3"):
        with pytest.raises(PreprocessingError, match="`input_size=`"):
            parse_input_size(bad)
    with pytest.raises(PreprocessingError, match="resize"):
        Preprocessing(resize="pad")
    with pytest.raises(PreprocessingError, match="channels"):
        Preprocessing(channels=2)
    with pytest.raises(PreprocessingError, match="together"):
        Preprocessing(mean=(0.5,) * 3)
    with pytest.raises(PreprocessingError, match="one value per channel"):
        Preprocessing(mean=(0.5, 0.5), std=(0.2, 0.2))
    assert isinstance(PreprocessingError("x"), ZooError)


def test_overrides_and_provenance_round_trip():
    base = zoo.get_spec("googlenet").preprocessing
    assert base == Preprocessing(size=224, mean=IMAGENET[0], std=IMAGENET[1])
    assert base.with_overrides() is base
    mine = base.with_overrides(input_size="keep", normalize="none", channels=1)
    assert mine == Preprocessing(size=None, mean=None, std=None, channels=1)
    assert Preprocessing.from_params(base.to_params()) == base
    assert Preprocessing.from_params(mine.to_params()) == mine
    assert "own size" in mine.describe() and "224 px (crop)" in base.describe()
    assert base.example(2).shape == (2, 3, 224, 224) and mine.example(1, size=32).shape == (1, 1, 32, 32)


def test_legacy_spec_fields_mirror_the_preprocessing():
    spec = zoo.ModelSpec(
        name="t", architecture="t", build=nn.Identity, layers=(), input_size=16, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    assert spec.preprocessing == Preprocessing(size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    none = zoo.ModelSpec(name="u", architecture="u", build=nn.Identity, layers=())
    assert none.preprocessing == Preprocessing() and none.input_size is None and none.mean is None
    import dataclasses

    other = dataclasses.replace(spec, preprocessing=Preprocessing(size=8))
    assert other.input_size == 8 and other.mean is None  # preprocessing wins, mirrors follow


FACTORIES = """
from torch import nn

def plain():
    return nn.Sequential(nn.Conv2d(3, 2, 1))

def as_dict():
    return nn.Sequential(nn.Conv2d(1, 2, 1))
as_dict.preprocessing = {"size": 32, "resize": "stretch", "mean": [0.5], "std": [0.5], "channels": 1}
as_dict.class_names = ["a", "b"]

def bad_keys():
    return nn.Sequential(nn.Conv2d(3, 2, 1))
bad_keys.preprocessing = {"input_size": 32}

class Net(nn.Module):
    preprocessing = {"size": 48}
    layers = ("c",)

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.c(x)
"""


def test_user_factories_declare_preprocessing_class_names_and_layers(tmp_path):
    f = tmp_path / "facts.py"
    f.write_text(FACTORIES)
    plain = zoo.get_spec(f"{f}:plain")
    assert plain.preprocessing == Preprocessing() and plain.labels is None and plain.layers == ()
    d = zoo.get_spec(f"{f}:as_dict")
    assert d.preprocessing == Preprocessing(size=32, resize="stretch", mean=(0.5,), std=(0.5,), channels=1)
    assert d.labels == ("a", "b")
    cls = zoo.get_spec(f"{f}:Net")
    assert cls.preprocessing.size == 48 and cls.layers == ("c",)
    with pytest.raises(ModelLoadError, match="unknown keys"):
        zoo.get_spec(f"{f}:bad_keys")


def test_read_class_names(tmp_path):
    (tmp_path / "a.txt").write_text("# comment\ncat\n\nfish\n")
    (tmp_path / "b.json").write_text('["cat", "fish"]')
    (tmp_path / "c.json").write_text('{"1": "fish", "0": "cat"}')
    (tmp_path / "gap.json").write_text('{"0": "cat", "2": "fish"}')
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    for name in ("a.txt", "b.json", "c.json"):
        assert read_class_names(tmp_path / name) == ("cat", "fish")
    for name, match in (("gap.json", "without gaps"), ("empty.txt", "no class"), ("missing.txt", "does not exist")):
        with pytest.raises(ModelLoadError, match=match):
            read_class_names(tmp_path / name)
