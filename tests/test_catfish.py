"""CatFish-synth: determinism, class composition rules, placement and drawing checks."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from catalog.errors import CircuitsError
from ingest.datasets import catfish
from ingest.datasets.catfish import (
    CLASS_NAMES,
    CLASS_PARTS,
    CLASSES,
    GAP,
    IMAGE_SIZE,
    PRIMITIVES,
    DatasetError,
    UnknownConcept,
    concept_names,
    concept_parts,
    make_split,
    render_concept,
    scene_layout,
)
from ingest.datasets.shapes import primitive_alpha


def test_same_seed_same_pixels_and_other_seed_other_pixels():
    a = render_concept("stripes_star", 4, seed=7)
    b = render_concept("stripes_star", 4, seed=7)
    c = render_concept("stripes_star", 4, seed=8)
    assert a.dtype == np.uint8 and a.shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len({img.tobytes() for img in a}) == 4  # images within a set differ too
    assert np.array_equal(render_concept("stripes_star", 2, seed=7), a[:2])  # prefix-stable


def test_make_split_is_deterministic_balanced_and_shuffled():
    x1, y1 = make_split(3, seed=5)
    x2, y2 = make_split(3, seed=5)
    x3, _ = make_split(3, seed=6)
    n = 3 * len(CLASS_NAMES)
    assert x1.shape == (n, IMAGE_SIZE, IMAGE_SIZE, 3) and x1.dtype == np.uint8
    assert y1.shape == (n,) and y1.dtype == np.int64
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert np.bincount(y1).tolist() == [3] * len(CLASS_NAMES)
    assert not np.array_equal(y1, np.sort(y1))  # shuffled, not class-major
    # each image is the class's concept image of the same seed
    first = render_concept(CLASS_NAMES[2], 3, seed=5)
    got = x1[y1 == 2]
    assert sorted(img.tobytes() for img in got) == sorted(img.tobytes() for img in first)


def test_class_composition_rules():
    assert len(PRIMITIVES) >= 6 and len(set(PRIMITIVES)) == len(PRIMITIVES)
    assert len(CLASS_NAMES) >= 9
    assert CLASS_NAMES == tuple(CLASS_PARTS) == tuple(name for name, _ in CLASSES)
    assert concept_names() == [*PRIMITIVES, *CLASS_NAMES]
    for name, (a, b) in CLASS_PARTS.items():
        assert re.fullmatch(r"[a-z]+_[a-z]+", name), name  # safe in a shell, a file name and SQL
        assert name == f"{a}_{b}" and a != b and {a, b} <= set(PRIMITIVES)
        assert concept_parts(name) == (a, b)
    assert len({frozenset(p) for p in CLASS_PARTS.values()}) == len(CLASS_PARTS)  # no duplicates
    for prim in PRIMITIVES:
        assert sum(prim in parts for parts in CLASS_PARTS.values()) >= 3, prim
        assert concept_parts(prim) == (prim,)
    overlaps = [len(set(p) & set(q)) for p, q in itertools.combinations(CLASS_PARTS.values(), 2)]
    assert 1 in overlaps and 0 in overlaps  # some class pairs share a primitive, some none


def test_unknown_concept_lists_the_valid_names():
    with pytest.raises(UnknownConcept) as info:
        render_concept("catfish", 1, seed=0)
    assert isinstance(info.value, CircuitsError)
    message = str(info.value)
    assert "\n" not in message
    assert all(name in message for name in concept_names())
    with pytest.raises(UnknownConcept):
        scene_layout("rings_stripes", 0, seed=0)  # a left-out pair is not a class


@pytest.mark.parametrize(
    "call",
    [
        lambda: render_concept("star", -1, seed=0),
        lambda: render_concept("star", 1, seed=-1),
        lambda: make_split(-2, seed=0),
        lambda: make_split(0, seed=-3),
    ],
)
def test_negative_counts_and_seeds_are_user_errors(call):
    with pytest.raises(DatasetError):
        call()


def test_zero_images_is_an_empty_array():
    assert render_concept("dots", 0, seed=0).shape == (0, IMAGE_SIZE, IMAGE_SIZE, 3)


def test_class_images_place_their_two_primitives_without_overlap():
    for name in CLASS_NAMES:
        for i in range(15):
            layout = scene_layout(name, i, seed=3)
            assert sorted(p.primitive for p in layout) == sorted(CLASS_PARTS[name])
            for p in layout:  # the containing circle lies inside the image
                assert p.radius - 1e-6 <= min(p.cx, p.cy, IMAGE_SIZE - p.cx, IMAGE_SIZE - p.cy)
            a, b = layout
            assert math.hypot(a.cx - b.cx, a.cy - b.cy) >= a.radius + b.radius + GAP - 1e-6


def test_primitive_concepts_show_one_primitive():
    for prim in PRIMITIVES:
        layout = scene_layout(prim, 4, seed=1)
        assert [p.primitive for p in layout] == [prim]


def test_layout_matches_the_drawn_pixels():
    """Pixels far from every placement circle are background: the layout is what was drawn."""
    name = "checker_star"
    img = render_concept(name, 1, seed=11)[0].astype(np.float32)
    layout = scene_layout(name, 0, seed=11)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
    inside = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
    for p in layout:
        inside |= np.hypot(xx - p.cx, yy - p.cy) <= p.radius
    saturation = img.max(axis=2) - img.min(axis=2)  # primitives are saturated, clutter is greyish
    assert np.percentile(saturation[inside], 75) > np.percentile(saturation[~inside], 75)


@pytest.mark.parametrize("prim", PRIMITIVES)
def test_shape_stays_in_its_circle_and_texture_has_two_colours(prim):
    for angle in (0.0, 0.7, 2.0):
        alpha, texture, (y0, y1, x0, x1) = primitive_alpha(prim, 64, 30.3, 33.8, 12.0, angle, 0.5, 1.3)
        yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
        outside = np.hypot(xx - 30.3, yy - 33.8) > 12.0 + 1.0  # allow the 1-pixel edge ramp
        assert alpha[outside].max(initial=0.0) == 0.0
        inner = alpha > 0.99
        assert inner.sum() > 60  # a visible shape
        frac = (texture[inner] > 0.5).mean()
        assert 0.1 < frac < 0.9, f"{prim}: texture covers {frac:.2f} of the shape"


def _regular_polygon(n, cx, cy, r_out, angle, r_in=None):
    """Vertices of a regular n-gon (or a 2n-vertex star when r_in is given) in image coordinates."""
    pts = []
    steps = 2 * n if r_in is not None else n
    for k in range(steps):
        r = r_out if (r_in is None or k % 2 == 0) else r_in
        t = angle + 2 * math.pi * k / steps
        # the local frame is the image frame rotated by `angle` (y down)
        pts.append((cx + r * math.cos(t), cy + r * math.sin(t)))
    return pts


@pytest.mark.parametrize(
    "prim, polygon",
    [
        (
            "checker",
            lambda cx, cy, r, a: [
                (
                    cx + 0.7 * r * math.sqrt(2) * math.cos(a + math.pi / 4 + k * math.pi / 2),
                    cy + 0.7 * r * math.sqrt(2) * math.sin(a + math.pi / 4 + k * math.pi / 2),
                )
                for k in range(4)
            ],
        ),
        ("dots", lambda cx, cy, r, a: _regular_polygon(3, cx, cy, r, a)),
        ("hatch", lambda cx, cy, r, a: _regular_polygon(6, cx, cy, r, a)),
        ("star", lambda cx, cy, r, a: _regular_polygon(5, cx, cy, r, a, r_in=0.45 * r)),
        ("stripes", lambda cx, cy, r, a: _regular_polygon(720, cx, cy, r, a)),
    ],
)
def test_shapes_match_a_plain_point_in_polygon_test(prim, polygon):
    """The analytic signed-distance shapes cover exactly the pixels whose centres are inside."""
    cx, cy, r, angle = 31.0, 29.5, 20.0, 0.4
    alpha, _, (y0, y1, x0, x1) = primitive_alpha(prim, 64, cx, cy, r, angle, 0.5)
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5  # pixel centres
    centres = np.stack([xx.ravel(), yy.ravel()], axis=1)
    ref = MplPath(polygon(cx, cy, r, angle)).contains_points(centres).reshape(xx.shape)
    ours = alpha > 0.5
    assert ref.sum() > 300
    assert (ref ^ ours).sum() <= 2, f"{prim}: {(ref ^ ours).sum()} pixels differ from the polygon"


def test_colours_vary_between_instances():
    """A primitive's colours are random per image, so no single pixel colour identifies it."""
    imgs = render_concept("rings", 12, seed=2).astype(np.float32)
    means = []
    for i, img in enumerate(imgs):
        (p,) = scene_layout("rings", i, seed=2)
        yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5
        means.append(img[np.hypot(xx - p.cx, yy - p.cy) < p.radius - 1].mean(axis=0))
    assert np.std(np.asarray(means), axis=0).max() > 20


def test_module_exports():
    assert set(catfish.__all__) >= {
        "PRIMITIVES",
        "CLASSES",
        "CLASS_PARTS",
        "CLASS_NAMES",
        "render_concept",
        "make_split",
        "concept_names",
    }
