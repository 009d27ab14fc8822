"""Cost of feature visualisation (`ingest.featurevis`) on this machine, one torch thread.

    .venv/bin/python bench/featurevis_cost.py catfish-mini            # a 15-neuron class circuit
    .venv/bin/python bench/featurevis_cost.py efficientnet-lite0 --size 128

catfish-mini: the stripes_star circuit (k = 3 over its 5 default layers, CLA on 8 CatFish images).
efficientnet-lite0: 11 channels of `_blocks.4/8/12/15` (the forward pass runs to the last block,
as for a circuit that reaches it). Both go through `featurevis_per_layer`, as
`recompute_run_featurevis` (`circuits thumbnails --featurevis`) does. Prints the seconds, the seconds per neuron and the share of
pictures whose own neuron ranks first among the units (activation over each unit's largest
over all the pictures), as the slow test in tests/test_featurevis.py checks.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from ingest import zoo
from ingest.featurevis import FeatureVisConfig, featurevis_per_layer, unit_activations


def _catfish_circuit() -> tuple[list[str], list[list[int]]]:
    """The stripes_star circuit's layers and channels, from a run ingested into a scratch catalog."""
    from catalog import store
    from catalog.engine import open_catalog
    from ingest.image_sets import resolve_images
    from ingest.pipeline import IngestConfig, ingest_concept

    cat = open_catalog(tempfile.mkdtemp() + "/c.duckdb", create=True)
    images = resolve_images(dataset="catfish:stripes_star", n=8, seed=0)
    result = ingest_concept(cat, IngestConfig("catfish-mini", "stripes_star", k=3, device="cpu"), images)
    with cat.session() as s:
        c = store.read_circuit(s, result.circuit_id)
    return list(c.layer_names), [list(chans) for chans in c.channels]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=["catfish-mini", "efficientnet-lite0"])
    ap.add_argument("--size", type=int, default=None, help="picture side (default: the model's input size)")
    ap.add_argument("--steps", type=int, default=FeatureVisConfig().steps)
    args = ap.parse_args()
    torch.set_num_threads(1)
    loaded = zoo.load_model(args.model)
    pp = loaded.spec.pp
    if args.model == "catfish-mini":
        layers, channels = _catfish_circuit()
    else:
        layers, channels = ["_blocks.4", "_blocks.8", "_blocks.12", "_blocks.15"], [[5, 17, 29]] * 3 + [[5, 17]]
    config = FeatureVisConfig(size=args.size, steps=args.steps).sized_for(pp)
    t0 = time.perf_counter()
    pics = featurevis_per_layer(loaded.module, pp, layers, channels, config=config)
    seconds = time.perf_counter() - t0
    units = [(p.layer, p.channel) for p in pics]
    acts = unit_activations(
        loaded.module, units, torch.stack([p.pixels for p in pics]), mean=pp.mean, std=pp.std, order=layers
    )
    relative = acts / acts.max(dim=0, keepdim=True).values.clamp_min(1e-6)
    own = (relative.argmax(dim=1) == torch.arange(len(units))).float().mean().item()
    print(
        f"{args.model}: {len(units)} neurons, {config.size} px, {args.steps} steps, 1 thread: {seconds:.1f} s "
        f"({seconds / len(units):.1f} s per neuron); own neuron first on {own:.0%} of pictures"
    )


if __name__ == "__main__":
    main()
