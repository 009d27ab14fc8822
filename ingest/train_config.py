"""A training run's settings (`TrainConfig`), the networks and recipes `circuits train` knows, and
the command line that reproduces a run: what `ingest.train` runs and records beside the weights."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from catalog.errors import CircuitsError
from ingest.zoo.catfish_mini import CATFISH_MINI_LAYERS, CATFISH_MINI_LOGITS, build_catfish_mini

__all__ = [
    "DATASETS",
    "MODELS",
    "TYPO_DEFAULTS",
    "TYPO_VIT_DEFAULTS",
    "TrainConfig",
    "TrainingError",
    "reproduce_command",
]


class TrainingError(CircuitsError):
    """Training cannot start or finish as asked (bad device, bad settings, unwritable output)."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; the defaults produce the shipped weights."""

    epochs: int = 8  # held-out accuracy passes 99% after 6 epochs; about 2-5 min on 2 CPU cores
    seed: int = 0  # torch init, dropout, batch order and every epoch's images derive from it
    train_per_class: int = 400  # fresh images per class per epoch (4800 an epoch)
    eval_per_class: int = 100  # held-out images per class (1200), from a seed no epoch uses
    batch_size: int = 64  # small batches help BatchNorm nets on CPU converge in few epochs
    lr: float = 3e-3  # peak of the one-cycle schedule; AdamW
    weight_decay: float = 5e-4  # light regularisation; fresh data does most of the work
    device: str = "auto"  # cuda when available, else cpu
    threads: int = 2  # torch CPU threads; the same count keeps a rerun bit-identical
    dataset: str = "catfish"  # catfish: CatFish-synth; typo: Typographic-synth (class names written)
    text_share: float = 0.0  # typo: share of training images with the true class name written on them
    text_only_share: float = 0.0  # typo: share showing the class name alone on a background
    model: str = "catfish-mini"  # the network: catfish-mini's (catfish-mini, typo-mini) or typo-vit's

    def validate(self) -> None:
        """Check the settings before any work starts.

        Raises:
            TrainingError: a count below 1 or a negative seed.
        """
        for name in ("epochs", "train_per_class", "eval_per_class", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise TrainingError(f"`{name}=` must be 1 or more, got {getattr(self, name)}")
        if self.seed < 0:
            raise TrainingError(f"`seed=` must be 0 or more, got {self.seed}")
        if self.model not in MODELS:
            raise TrainingError(f"unknown model {self.model!r}: use {' or '.join(MODELS)}")
        if self.dataset not in DATASETS:
            raise TrainingError(f"unknown training dataset {self.dataset!r}: use {' or '.join(DATASETS)}")
        shares = (self.text_share, self.text_only_share)
        if min(shares) < 0 or sum(shares) > 1:
            raise TrainingError(f"`text_share=` + `text_only_share=` must lie in [0, 1], got {shares}")


DATASETS = {"catfish": "catfish-mini", "typo": "typo-mini"}  # training set -> the model it makes
TYPO_DEFAULTS: dict[str, Any] = dict(dataset="typo", epochs=12, text_share=0.5, text_only_share=0.1)  # see `train_typo`
# typo-vit: typo-mini's recipe switches (text shares, epochs, images per class); a transformer's
# weight decay, and batches of 32 (twice the updates for the same compute: ViTs start slowly).
TYPO_VIT_DEFAULTS: dict[str, Any] = dict(
    TYPO_DEFAULTS, model="typo-vit", epochs=40, lr=3e-4, weight_decay=0.05, batch_size=32
)


def _catfish_net():
    return build_catfish_mini(), CATFISH_MINI_LAYERS, CATFISH_MINI_LOGITS


def _typo_vit_net():
    from ingest.zoo.typo_vit import TYPO_VIT_LAYERS, TYPO_VIT_LOGITS, build_typo_vit

    return build_typo_vit(), TYPO_VIT_LAYERS, TYPO_VIT_LOGITS


MODELS = {"catfish-mini": _catfish_net, "typo-vit": _typo_vit_net}  # network -> (module, layers, logits)


def reproduce_command(config: TrainConfig, out: Path, device: torch.device) -> str:
    """The `circuits train catfish|typo` command line that runs `config` on `device` and writes `out`.

    The device is the resolved one (never `auto`): CPU and GPU kernels give different bits.
    """
    try:
        shown = out.resolve().relative_to(Path.cwd())
    except ValueError:
        shown = out
    vit = config.model == "typo-vit"
    defaults = TrainConfig(**(TYPO_VIT_DEFAULTS if vit else TYPO_DEFAULTS if config.dataset == "typo" else {}))
    command = "typo-vit" if vit else config.dataset
    args = ["circuits", "train", command, "--epochs", str(config.epochs), "--seed", str(config.seed)]
    for name in ("train_per_class", "eval_per_class", "batch_size", "threads", "text_share", "text_only_share"):
        if getattr(config, name) != getattr(defaults, name):
            args += [f"--{name.replace('_', '-')}", str(getattr(config, name))]
    args += ["--out", str(shown), "--device", str(device)]
    return shlex.join(args)
