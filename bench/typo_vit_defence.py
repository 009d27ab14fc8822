"""typo-vit's typographic defence, two methods side by side (issue 19, item 6).

    python bench/typo_vit_defence.py [--budgets 6,12] [--randoms 5] [--threads 2]

Both remove attention heads, so budgets match in units (heads removed of typo-vit's 24):

- **CLA text circuit**: a contrast CLA run over the six head layers (`…self_attention:heads`) on
  the same 192 CatFish-synth images with and without a class name written on them
  (`ingest.defence.contrast.contrast_matrices`, seed 501), then `find_circuit` with k heads per
  layer (6 heads: k = 1; 12 heads: k = 2);
- **head ablation** in the manner of Dyslexify (`ingest.defence.head_ablation`): heads ranked by
  how much the written word changes their output on the same image pairs, top h;
- **random heads**: `--randoms` seeded draws of h heads.

Each is zero-ablated and mean-ablated (per-token mean over the discovery images without words)
and measured on held-out seeds 21, 31, 41 (240 attack images and 240 clean images each, never seen
by either method): attack success (share read as the written class) and clean accuracy, as mean
over the three seeds (± the spread over seeds; random heads: over draws and seeds).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ingest import zoo
from ingest.cla import attribute, find_circuit
from ingest.cla.heads import is_head_layer
from ingest.datasets.typo_sets import require_written, typo_image_set
from ingest.defence.attack_eval import predict
from ingest.defence.contrast import contrast_matrices
from ingest.defence.head_ablation import ablate_heads, head_means, random_heads, rank_heads

HOLDOUT = (21, 31, 41)
CONCEPT_SEED = 501


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="6,12", help="heads removed (multiples of the 6 head layers)")
    ap.add_argument("--randoms", type=int, default=5, help="random head draws per budget")
    ap.add_argument("--n-text", type=int, default=192)
    ap.add_argument("--n-eval", type=int, default=240)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    loaded = zoo.load_model("typo-vit")
    model, spec = loaded.module.eval(), loaded.spec
    layers = [name for name in spec.layers if is_head_layer(name)]

    def prep(s):
        return zoo.preprocess(spec, list(s.images))

    text = typo_image_set("typo:attack", args.n_text, seed=CONCEPT_SEED)
    plain = typo_image_set("typo:clean", args.n_text, seed=CONCEPT_SEED)
    x_text, x_plain = prep(text), prep(plain)
    s_text = attribute(model, layers, x_text, device="cpu")
    s_plain = attribute(model, layers, x_plain, device="cpu")
    contrast = contrast_matrices(s_text, s_plain)
    ranked = [h for h, _ in rank_heads(model, layers, x_text, x_plain)]
    means = head_means(model, layers, x_plain)
    n_heads = [s.shape[0] for s in s_text] + [s_text[-1].shape[1]]
    t_discover = time.perf_counter() - t0

    evals = []
    for seed in HOLDOUT:
        att = typo_image_set("typo:attack", args.n_eval, seed=seed)
        clean = typo_image_set("typo:clean", args.n_eval, seed=seed)
        evals.append((prep(att), require_written(att), prep(clean), np.asarray(clean.labels)))

    def measure(heads, mode):
        out = []
        for xa, written, xc, labels in evals:
            with ablate_heads(model, heads, means=means if mode == "mean" else None):
                pa = predict(model, xa, device="cpu").argmax(1).numpy()
                pc = predict(model, xc, device="cpu").argmax(1).numpy()
            out.append(((pa == written).mean(), (pc == labels).mean()))
        return np.array(out)  # (seeds, 2)

    base = measure([], "zero")
    rows = [("none", "-", 0, "", base)]
    for h in (int(b) for b in args.budgets.split(",")):
        k = h // len(layers)
        circuit = find_circuit(contrast, k)
        cla = [(layers[i], int(c)) for i, chans in enumerate(circuit.channels) for c in chans]
        dys = ranked[:h]
        for mode in ("zero", "mean"):
            rows.append(("CLA text circuit", mode, h, _fmt(cla), measure(cla, mode)))
            rows.append(("head ablation (Dyslexify)", mode, h, _fmt(dys), measure(dys, mode)))
            rand = np.concatenate(
                [measure(random_heads(layers, n_heads, h, seed=s), mode) for s in range(args.randoms)]
            )
            rows.append((f"random heads ({args.randoms} draws)", mode, h, "", rand))
    print(f"typo-vit, held-out seeds {HOLDOUT}, {args.n_eval} attack + {args.n_eval} clean images each")
    print("| method | ablation | heads removed | attack success | clean accuracy | heads (block.head) |")
    print("|---|---|---|---|---|---|")
    for name, mode, h, which, m in rows:
        a, c = m[:, 0], m[:, 1]
        print(f"| {name} | {mode} | {h} | {a.mean():.3f} ± {a.std():.3f} | {c.mean():.3f} ± {c.std():.3f} | {which} |")
    print(f"discovery {t_discover:.0f} s, total {time.perf_counter() - t0:.0f} s ({args.threads} threads)")


def _fmt(heads) -> str:
    return " ".join(f"{name.split('encoder_layer_')[1].split('.')[0]}.{h}" for name, h in heads)


if __name__ == "__main__":
    main()
