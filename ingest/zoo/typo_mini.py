"""typo-mini: catfish-mini's network trained on Typographic-synth, so it reads (docs/architecture.md, "Models"; docs/method.md, "Benchmarks").

Same layout, layers and preprocessing as `ingest.zoo.catfish_mini`; the weights differ: a share of
its training images carried the true class name written on them, so a class name written on an
image of another class sways it (a typographic attack). Trained weights ship as `WEIGHTS_PATH`
(made by `circuits train typo`; see the .json beside it); load them with
`ingest.zoo.registry.load_model("typo-mini")`.
"""

from __future__ import annotations

from pathlib import Path

from ingest.zoo import catfish_mini as cm

__all__ = ["TYPO_MINI_LAYERS", "WEIGHTS_PATH", "spec"]

TYPO_MINI_LAYERS = cm.CATFISH_MINI_LAYERS
WEIGHTS_PATH = Path(__file__).resolve().parent.parent / "weights" / "typo_mini.pt"


def spec():
    """The zoo entry of typo-mini (an `ingest.zoo.registry.ModelSpec`)."""
    from ingest.zoo.registry import ModelSpec

    return ModelSpec(
        name="typo-mini",
        architecture="catfish-mini (InceptionV1-style), trained on Typographic-synth",
        build=cm.build_catfish_mini,
        layers=tuple(TYPO_MINI_LAYERS),
        input_size=int(cm.INPUT_SIZE),
        mean=tuple(cm.MEAN),
        std=tuple(cm.STD),
        labels=tuple(cm.CLASS_NAMES),
        default_weights=WEIGHTS_PATH,
    )
