"""The typographic defence on a model with attention heads: CLA's text circuit beside head ablation
(docs/method.md, "Token models").

`circuits defend typo-vit` runs both methods on the same heads and prints one table:

- **CLA text circuit**: the contrast CLA run of `ingest.defence.contrast` over the model's head
  layers (`PATH:heads`; the text images against the same images without their words), stored in
  the catalog like every defence run, and its circuit of k heads per head layer, found by the
  usual search (`find_circuit`, docs/method.md, "Circuit search");
- **head ablation** in the manner of Dyslexify (`ingest.defence.head_ablation.rank_heads`): the
  heads whose output the written word changes most, on the same image pairs, top h;
- **random heads**: `n_baselines` seeded draws of h heads.

Budgets match in units: for each k, all three remove h = k × (head layers) heads, each by
zero-ablation and by mean-ablation (the head's mean output per token over the plain images).
They are measured on the held-out seeds' attack and clean images (seen by neither method; without
held-out seeds, on the reported ones): attack success (share read as the written class) and clean
accuracy, the mean over seeds and its spread (random heads: over draws and seeds).

The CLA run and its circuits are stored; the ablation measurements are returned, not stored (the
catalog's interventions zero channels and cannot express mean-ablation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from catalog.engine import Catalog
from ingest.defence.target import DefenceTarget, DefendError

if TYPE_CHECKING:
    from ingest.defence.defend import DefendConfig

__all__ = ["HeadComparison", "HeadRow", "compare_heads", "head_layers_of", "verdicts"]

CLA, DYSLEXIFY, RANDOM = "CLA text circuit", "head ablation (Dyslexify)", "random heads"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class HeadRow:
    """One ablation measured on the held-out images (shares, 0–1; `_sd`: spread over seeds/draws)."""

    method: str
    ablation: str  # "zero", "mean" or "-" (nothing removed)
    heads_removed: int
    attack_success: float
    attack_success_sd: float
    clean_accuracy: float
    clean_accuracy_sd: float
    heads: tuple[str, ...] = ()  # `block.head`: block = position among the head layers

    def as_dict(self) -> dict[str, object]:
        """A flat row for tables, CSV and JSON."""
        return {
            "method": self.method,
            "ablation": self.ablation,
            "heads_removed": self.heads_removed,
            "attack_success": round(self.attack_success, 4),
            "attack_success_sd": round(self.attack_success_sd, 4),
            "clean_accuracy": round(self.clean_accuracy, 4),
            "clean_accuracy_sd": round(self.clean_accuracy_sd, 4),
            "heads": " ".join(self.heads),
        }


@dataclass(frozen=True)
class HeadComparison:
    """What `compare_heads` measured: the rows, where each method wins, and on which images."""

    model: str
    run_id: int  # the stored contrast CLA run over the head layers
    layers: tuple[str, ...]
    seeds: tuple[int | None, ...]  # held-out seeds (None: the reported images)
    n_attack: int  # attack images per seed
    n_clean: int  # clean images per seed
    rows: tuple[HeadRow, ...]
    verdicts: tuple[str, ...]


def head_layers_of(model: str, layers: Sequence[str] | None) -> list[str]:
    """The head layers (`PATH:heads`) among `layers` (default: the model's own CLA layers)."""
    from ingest import zoo
    from ingest.cla.heads import is_head_layer

    names = layers if layers else zoo.get_spec(model).layers
    return [name for name in names if is_head_layer(name)]


def compare_heads(
    cat: Catalog,
    config: DefendConfig,
    target: DefenceTarget,
    layers: Sequence[str],
    *,
    progress: Progress | None = None,
) -> HeadComparison:
    """Run both methods at each budget of `config.ks` and measure them beside random heads.

    Args:
        cat: an open, writable catalog (the CLA run is stored in it).
        config: an `ingest.defence.defend.DefendConfig` (model, weights, ks, n_baselines, device, …).
        target: Typographic-synth images with a contrast text set (`plain_set`).
        layers: the head layers, in forward order.

    Raises:
        DefendError: no head layers, no plain images to pair with the text images, or a k that is not
            one integer (or one per head layer).
    """
    from ingest import zoo
    from ingest.datasets.typo_sets import require_written
    from ingest.defence.contrast import contrast_ingest
    from ingest.defence.defend import TEXT_CONCEPT
    from ingest.defence.head_ablation import head_means, random_heads, rank_heads
    from ingest.hooks import resolve_device
    from ingest.pipeline import IngestConfig

    layers = list(layers)
    budgets = _budgets(config.ks, len(layers))
    if target.plain_set is None:
        raise DefendError(
            "head ablation ranks heads on image pairs: use the contrast text set (the text images "
            "beside the same images without their words)"
        )
    report = progress or (lambda *_: None)
    loaded = zoo.load_model(config.model, weights=config.weights, layers=layers)
    module = loaded.module.eval()
    sets = target.holdout or ((None, target.attack_set, tuple(target.clean_sets.values())),)
    for _, attack, _ in sets:
        require_written(attack)

    cla: dict[tuple[int, ...], list[tuple[str, int]]] = {}
    run_id = -1
    for i, k in enumerate(budgets):
        report("text circuit", i, len(budgets))
        res = contrast_ingest(
            cat,
            IngestConfig(model=loaded, concept=TEXT_CONCEPT, k=k, device=config.device),
            target.text_set,
            target.plain_set,
            progress=progress,
        )
        run_id = res.run_id
        cla[k] = [(layers[j], int(c)) for j, chans in enumerate(res.channels) for c in chans]
    report("text circuit", len(budgets), len(budgets))
    cat.release()  # the measuring below holds nothing

    dev = resolve_device(config.device)
    module.to(dev)

    def prep(image_set) -> torch.Tensor:
        return zoo.preprocess(loaded.spec, list(image_set.images)).to(dev)

    x_text, x_plain = prep(target.text_set), prep(target.plain_set)
    ranked = [h for h, _ in rank_heads(module, layers, x_text, x_plain, batch_size=config.batch_size)]
    means = head_means(module, layers, x_plain, batch_size=config.batch_size)
    n_heads = _heads_per_layer(means, layers)
    evals = []
    for _, attack, clean_sets in sets:
        labels = np.concatenate([np.asarray(c.labels) for c in clean_sets])
        x_clean = torch.cat([prep(c) for c in clean_sets])
        evals.append((prep(attack), require_written(attack), x_clean, labels))

    jobs = 1 + len(budgets) * 2 * (2 + len(config.baseline_seeds))
    done = [0]

    def measure(heads: Sequence[tuple[str, int]], mode: str) -> np.ndarray:
        from ingest.defence.attack_eval import predict
        from ingest.defence.head_ablation import ablate_heads

        out = []
        for xa, written, xc, labels in evals:
            with ablate_heads(module, heads, means=means if mode == "mean" else None):
                pa = predict(module, xa, batch_size=config.batch_size, device=config.device).argmax(1).numpy()
                pc = predict(module, xc, batch_size=config.batch_size, device=config.device).argmax(1).numpy()
            out.append(((pa == written).mean(), (pc == labels).mean()))
        done[0] += 1
        report("held-out images", done[0], jobs)
        return np.array(out)  # (seeds, 2)

    report("held-out images", 0, jobs)
    rows = [_row("none", "-", [], measure([], "zero"), layers)]
    for k in budgets:
        h = len(cla[k])
        for mode in ("zero", "mean"):
            rows.append(_row(CLA, mode, cla[k], measure(cla[k], mode), layers))
            rows.append(_row(DYSLEXIFY, mode, ranked[:h], measure(ranked[:h], mode), layers))
            draws = [measure(random_heads(layers, n_heads, h, seed=s), mode) for s in config.baseline_seeds]
            rows.append(_row(f"{RANDOM} ({len(draws)} draws)", mode, [None] * h, np.concatenate(draws), layers))
    return HeadComparison(
        model=config.model,
        run_id=run_id,
        layers=tuple(layers),
        seeds=tuple(s for s, _, _ in sets),
        n_attack=len(evals[0][0]),
        n_clean=len(evals[0][2]),
        rows=tuple(rows),
        verdicts=verdicts(rows),
    )


def verdicts(rows: Sequence[HeadRow]) -> tuple[str, ...]:
    """Per budget and ablation: which method leaves lower attack success, which keeps more clean
    accuracy, and whether each lies outside the random heads' spread."""
    out = []
    by = {(r.method.split(" (")[0], r.ablation, r.heads_removed): r for r in rows}
    for (method, mode, h), a in by.items():
        if method != CLA:
            continue
        b, rnd = by.get(("head ablation", mode, h)), by.get((RANDOM, mode, h))
        if b is None:
            continue
        attack = (
            "CLA"
            if a.attack_success < b.attack_success
            else "head ablation"
            if b.attack_success < a.attack_success
            else "tie"
        )
        clean = (
            "CLA"
            if a.clean_accuracy > b.clean_accuracy
            else "head ablation"
            if b.clean_accuracy > a.clean_accuracy
            else "tie"
        )
        line = (
            f"{h} heads, {mode}-ablation: lower attack success: {attack} "
            f"(CLA {a.attack_success:.3f}, head ablation {b.attack_success:.3f}); higher clean accuracy: {clean} "
            f"(CLA {a.clean_accuracy:.3f}, head ablation {b.clean_accuracy:.3f})"
        )
        if attack == clean and attack != "tie":
            line += f" -> {attack} wins"
        if rnd is not None:
            lo = rnd.attack_success - rnd.attack_success_sd
            beat = [n for n, r in (("CLA", a), ("head ablation", b)) if r.attack_success < lo]
            line += f"; below random heads' attack success − 1 sd ({lo:.3f}): {', '.join(beat) or 'neither'}"
        out.append(line)
    return tuple(out)


def _budgets(ks: Sequence[int | tuple[int, ...]], n_layers: int) -> list[tuple[int, ...]]:
    out = []
    for k in ks:
        per = (k,) * n_layers if isinstance(k, int) else tuple(k)
        if len(per) != n_layers:
            raise DefendError(f"`ks=` {','.join(map(str, per))}: give one k or one per head layer ({n_layers})")
        out.append(per)
    return list(dict.fromkeys(out))


def _heads_per_layer(means, layers: Sequence[str]) -> list[int]:
    return [int(means[name].shape[0]) for name in layers]


def _row(method: str, mode: str, heads, m: np.ndarray, layers: Sequence[str]) -> HeadRow:
    index = {name: i for i, name in enumerate(layers)}
    named = tuple(f"{index[h[0]]}.{h[1]}" for h in heads if h is not None)
    a, c = m[:, 0], m[:, 1]
    return HeadRow(
        method,
        mode,
        len(heads),
        float(a.mean()),
        float(a.std()),
        float(c.mean()),
        float(c.std()),
        named,
    )
