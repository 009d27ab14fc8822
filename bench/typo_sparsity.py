"""Experiment: does a channel-sparsity penalty make typo-mini read with fewer channels?

    python bench/typo_sparsity.py --lam 0.02 --out /tmp/typo_sparse.pt
    circuits db init --db /tmp/sparse.duckdb
    circuits defend typo-mini --weights /tmp/typo_sparse.pt --k 1 --k 2 --k 3 --db /tmp/sparse.duckdb --device cpu

Trains exactly as `circuits train typo` (same seed, data, schedule; `ingest.train.train_typo`) with
one addition to the loss: `lam` × Σ over the five CLA layers of the mean over channels of each
channel's RMS activation over the batch (a group lasso: it switches whole channels off). The idea
is that a network using fewer channels might read through a few of them, as CLIP's text neurons
do, so that pruning a small text circuit stops the reading and random circuits mostly hit idle
channels. The shipped weights are not trained this way; the README reports what this gave.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import ingest.train as train
from catalog.errors import CircuitsError
from ingest.zoo.catfish_mini import CATFISH_MINI_LAYERS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lam", type=float, required=True, help="weight of the channel-sparsity penalty")
    ap.add_argument("--out", required=True, help="state dict to write (a .json sidecar goes beside it)")
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args()
    if args.lam < 0 or args.epochs < 1:
        ap.error("--lam must be 0 or more and --epochs 1 or more")
    if not Path(args.out).parent.is_dir():  # checked before ~3 minutes of training, not after
        ap.error(f"no folder {Path(args.out).parent}: create it or choose another --out")

    acts: list[torch.Tensor] = []
    build = train.build_catfish_mini

    def build_hooked():
        model = build()
        for name in CATFISH_MINI_LAYERS:  # training passes only: evaluation runs without grad
            model.get_submodule(name).register_forward_hook(
                lambda mod, inp, out: acts.append(out) if torch.is_grad_enabled() else None
            )
        return model

    cross_entropy = torch.nn.functional.cross_entropy

    def penalised(logits, target, *a, **kw):
        loss = cross_entropy(logits, target, *a, **kw)
        if acts:
            group = sum(o.float().pow(2).mean(dim=(0, 2, 3)).sqrt().mean() for o in acts)
            acts.clear()
            loss = loss + args.lam * group
        return loss

    train.build_catfish_mini = build_hooked
    torch.nn.functional.cross_entropy = penalised  # this process only: the loss `ingest.train` calls
    config = train.TrainConfig(**{**train.TYPO_DEFAULTS, "epochs": args.epochs})
    try:
        result = train.train_typo(config, args.out, on_epoch=lambda r: print(r, flush=True))
    except CircuitsError as exc:
        sys.exit(f"error: {exc}")
    print(
        f"held-out accuracy {result.heldout_accuracy:.4f}, attack success {result.attack_success:.4f}; {result.weights_path}"
    )


if __name__ == "__main__":
    main()
