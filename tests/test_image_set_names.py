"""`catalog.image_set_names`: one grammar for image-set names and image sources, written and read back."""

from __future__ import annotations

import pytest

from catalog.image_set_names import ImageSetName, image_set_name, image_source, parse_image_set_name
from catalog.sizes import BadK, k_per_layer, parse_k


@pytest.mark.parametrize(
    "text, parsed, concept",
    [
        ("catfish:stripes#seed=0", ImageSetName("catfish", "stripes", 0), "stripes"),
        ("catfish:stripes_star#seed=-3#7", ImageSetName("catfish", "stripes_star", -3, index=7), "stripes_star"),
        ("typo:text#seed=3&size=64", ImageSetName("typo", "text", 3, {"size": "64"}), "text"),
        ("typo:clean:dots#seed=2#0", ImageSetName("typo", "clean:dots", 2, index=0), "clean:dots"),
        ("dir:/data/cats/", ImageSetName("dir", "/data/cats/"), "cats"),
        ("stripes", ImageSetName("", "stripes"), "stripes"),
        ("catfish:odd#x", ImageSetName("catfish", "odd#x"), "odd"),  # not the grammar: kept whole
    ],
)
def test_names_parse_and_write_back(text, parsed, concept):
    got = parse_image_set_name(text)
    assert got == parsed and got.concept == concept
    if got.seed is not None:
        name = image_set_name(got.kind, got.name, got.seed, **got.options)
        assert (image_source(name, got.index) if got.index is not None else name) == text
        assert got.set_name == name


def test_the_writers_use_the_grammar():
    import numpy as np

    from ingest.images import rendered_image_set

    s = rendered_image_set(image_set_name("catfish", "dots", 4), np.zeros((2, 4, 4, 3), np.uint8))
    assert [parse_image_set_name(src) for src in s.sources] == [
        ImageSetName("catfish", "dots", 4, index=i) for i in range(2)
    ]


@pytest.mark.parametrize("value, expected", [(5, 5), ("5", 5), ("4, 6,6", (4, 6, 6)), ([4, 6], (4, 6)), ((3,), 3)])
def test_parse_k_reads_every_spelling(value, expected):
    assert parse_k(value) == expected


@pytest.mark.parametrize("value", ["x", "", [], 0, "2,0", True, 2.5, None])
def test_parse_k_refuses_with_one_error_class(value):
    with pytest.raises(BadK, match="k"):
        parse_k(value)


def test_k_per_layer_checks_count_and_widths():
    assert k_per_layer(2, ["a", "b"], [3, 4]) == [2, 2]
    with pytest.raises(BadK, match="has 3 values but there are 2 layers"):
        k_per_layer("1,2,3", ["a", "b"], [3, 4])
    with pytest.raises(BadK, match="larger than layer b, which has 4"):
        k_per_layer([1, 5], ["a", "b"], [3, 4])
