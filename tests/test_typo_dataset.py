"""Typographic-synth: determinism, what each set records, text really drawn, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from catalog.errors import CircuitsError
from ingest.datasets.catfish import CLASS_NAMES, IMAGE_SIZE, DatasetError, UnknownConcept, render_concept
from ingest.datasets.typo import (
    DISTRACTOR_WORDS,
    display_text,
    make_typo_split,
    render_attack,
    render_text,
    render_typo,
    typo_set_names,
    write_word,
)
from ingest.datasets.typo_sets import (
    WRITTEN_FILE,
    AttackImageSet,
    AttackLabelsMissing,
    UnknownClass,
    attack_from_dir,
    check_classes,
    read_attack_dir,
    require_written,
    typo_image_set,
)
from ingest.pipeline import resolve_images


def test_same_seed_same_pixels_other_seed_other_pixels():
    for name in ("typo:attack:stripes_star", "typo:text", "typo:attack", "typo:clean"):
        a, b, c = (render_typo(name, 6, seed=s) for s in (3, 3, 4))
        assert a.images.shape == (6, IMAGE_SIZE, IMAGE_SIZE, 3) and a.images.dtype == np.uint8
        assert np.array_equal(a.images, b.images), name
        assert not np.array_equal(a.images, c.images), name
        if a.written is not None:
            assert np.array_equal(a.written, b.written)


def test_clean_set_is_the_catfish_images_and_attack_writes_on_them():
    clean = render_typo("typo:clean:checker_dots", 5, seed=2)
    attack = render_typo("typo:attack:checker_dots", 5, seed=2)
    base = render_concept("checker_dots", 5, seed=2)
    assert np.array_equal(clean.images, base) and clean.written is None
    assert (clean.labels == CLASS_NAMES.index("checker_dots")).all()
    assert (attack.labels == CLASS_NAMES.index("checker_dots")).all()
    # the written class is never the true one, and the text changes a visible part of the image
    assert (attack.written != attack.labels).all()
    changed = (attack.images != base).any(axis=3).mean(axis=(1, 2))  # share of pixels changed
    assert (changed > 0.03).all() and (changed < 0.5).all(), changed


def test_attack_written_classes_cover_all_others():
    a = render_attack("rings_star", 300, seed=0)
    true = CLASS_NAMES.index("rings_star")
    counts = np.bincount(a.written, minlength=len(CLASS_NAMES))
    assert counts[true] == 0
    assert (np.delete(counts, true) > 10).all()  # roughly uniform over the eleven others


def test_mixed_sets_cycle_through_classes():
    a = render_typo("typo:attack", 30, seed=1)
    assert a.labels.tolist() == [i % len(CLASS_NAMES) for i in range(30)]
    assert (a.written != a.labels).all()
    one = render_attack(CLASS_NAMES[1], 3, seed=1)  # image 1, 13, 25 of the mix
    assert np.array_equal(a.images[1::12], one.images) and np.array_equal(a.written[1::12], one.written)


def test_text_set_has_words_and_no_labels():
    t = render_text(len(CLASS_NAMES) + len(DISTRACTOR_WORDS), seed=0)
    assert t.labels is None and t.written is None
    # backgrounds alone (same rng stream, no text) differ from the images: text was drawn
    assert all(len(np.unique(im.reshape(-1, 3), axis=0)) > 2 for im in t.images)
    big = render_text(2, seed=0, size=224)
    assert big.images.shape == (2, 224, 224, 3)


def test_write_word_draws_readable_text_of_the_right_size():
    blank = np.full((64, 64, 3), 128, np.uint8)
    out = write_word(blank, "stripes_checker", np.random.default_rng(0))
    ys, xs = np.nonzero((out != 128).any(axis=2))
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    assert 18 <= height <= 34 and 25 <= width <= 64, (height, width)  # two lines of about H/6
    assert display_text("stripes_checker") == "stripes\nchecker" and display_text("ipod") == "ipod"
    big = write_word(np.full((240, 300, 3), 128, np.uint8), "ipod", np.random.default_rng(0))
    ys, _ = np.nonzero((big != 128).any(axis=2))
    assert 25 <= ys.max() - ys.min() + 1 <= 50  # font size a sixth of the shorter side (40 px)


def test_typo_split_has_text_on_the_asked_share_and_true_names():
    n = 20  # per class: 240 images, the 75 % share within ±3.6 binomial standard deviations below
    x, y = make_typo_split(n, seed=0, text_share=0.5, text_only_share=0.25)
    assert x.shape[0] == n * len(CLASS_NAMES) and np.bincount(y).tolist() == [n] * len(CLASS_NAMES)
    x0, y0 = make_typo_split(n, seed=0, text_share=0.0, text_only_share=0.0)
    # class-major order before the shuffle is the same permutation, so compare image by image
    changed = np.array([(a != b).any() for a, b in zip(x, x0)])
    assert 0.65 < changed.mean() < 0.85, changed.mean()  # 75% carry text
    assert np.array_equal(make_typo_split(n, seed=0, text_share=0.5, text_only_share=0.25)[0], x)
    with pytest.raises(DatasetError):
        make_typo_split(2, seed=0, text_share=0.8, text_only_share=0.5)


def test_image_sets_record_written_labels_and_resolve_through_the_pipeline():
    s = resolve_images(dataset="typo:attack:dots_hatch", n=4, seed=1)
    assert isinstance(s, AttackImageSet) and s.name == "typo:attack:dots_hatch#seed=1"
    assert require_written(s).tolist() == render_attack("dots_hatch", 4, seed=1).written.tolist()
    assert s.labels == (CLASS_NAMES.index("dots_hatch"),) * 4
    clean = resolve_images(dataset="typo:clean", n=24, seed=1)
    assert not isinstance(clean, AttackImageSet) and len(set(clean.labels)) == 12
    text = resolve_images(dataset="typo:text", n=4, seed=1)
    assert text.labels is None
    with pytest.raises(AttackLabelsMissing):
        require_written(clean)
    with pytest.raises(CircuitsError, match="typo:clean"):
        resolve_images(dataset="typo:bogus", n=2, seed=0)
    with pytest.raises(UnknownConcept, match="stripes_checker"):
        typo_image_set("typo:attack:nope", 2, seed=0)
    assert len(typo_set_names()) == 4 + 2 * len(CLASS_NAMES)
    names = render_typo("typo:text:names", 12, seed=0).images
    assert np.array_equal(names, render_text(12, seed=0, words=CLASS_NAMES).images)


def test_attack_from_a_folder_and_read_back(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    classes = ["apple", "ipod", "dog"]
    a = attack_from_dir(tmp_path, classes, seed=0, label="apple")
    assert len(a) == 4 and a.labels == (0,) * 4 and a.class_names == tuple(classes)
    assert all(w in (1, 2) for w in a.written)
    assert a.images[0].shape == (90, 120, 3)
    again = attack_from_dir(tmp_path, classes, seed=0, label="apple")
    assert a.sha256 == again.sha256
    with pytest.raises(UnknownClass, match="pear"):
        attack_from_dir(tmp_path, classes, seed=0, label="pear")
    with pytest.raises(AttackLabelsMissing, match=WRITTEN_FILE):
        read_attack_dir(tmp_path, classes)
    (tmp_path / WRITTEN_FILE).write_text("file,written\n0.png,ipod\n1.png,dog\n2.png,dog\n3.png,ipod\n")
    r = read_attack_dir(tmp_path, classes, label="apple")
    assert r.written == (1, 2, 2, 1) and r.labels == (0,) * 4
    with pytest.raises(UnknownClass):
        check_classes(["a", "a"])
    with pytest.raises(UnknownClass, match="'x'"):
        check_classes(["a", "x"], known=["a", "b"])


def test_importing_the_datasets_does_not_import_torch():
    code = "import sys, ingest.datasets, ingest.datasets.typo_sets; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
