"""Car-circuit harness: does CLA on Lucid's InceptionV1 find the car circuit of
"Zoom In" (Olah et al. 2020)? There, the car detector mixed4c:447 is built from mixed4b:237
(windows, at the top) and mixed4b:373 (wheels, at the bottom), among other mixed4b neighbours.

    python bench/car_circuit.py --weights inception5h.pth --images cars/ [--layers mixed4a,mixed4b,mixed4c,mixed4d]
                                [--k 5] [--db car.duckdb] [--input-size 224] [--top 10]
    python bench/car_circuit.py --planted-demo   # the stand-in below, no weights needed

It ingests the car concept (a folder of car photos) with the zoo model `inceptionv1` and the
user's weights file (Lucent's converted `inception5h` state dict; never downloaded), then reports:
the circuit per layer; which known car neurons it contains; the rank of mixed4c:447 among mixed4c
by CLA total (in + out); and the mixed4b neurons with the largest CLA score into mixed4c:447 (its
neighbours), with the ranks of 237 and 373 among them.

Tested ONLY on a planted stand-in (`plant_car_circuit`): a random-init InceptionV1 whose
weights are edited so that mixed4b:237 and mixed4b:373 are active on any image (large biases)
and feed mixed4c:447 through one 5×5-bottleneck channel with large weights. That checks the
plumbing and the report, not that CLA finds the real circuit: that needs the real weights, which
the repository does not ship.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CAR = ("mixed4c", 447)  # the car detector
PARTS = {("mixed4b", 237): "window (top)", ("mixed4b", 373): "wheel (bottom)"}
DEFAULT_LAYERS = ("mixed4a", "mixed4b", "mixed4c", "mixed4d")


@dataclass
class CarReport:
    """What the harness measured on one run (see the module docstring)."""

    run_id: int
    circuit_id: int
    layers: tuple[str, ...]
    channels: dict[str, list[int]]
    known_in_circuit: dict[str, bool]  # "mixed4c:447" etc. -> in the circuit
    car_rank: int  # 1-based rank of mixed4c:447 among mixed4c by CLA total (in + out)
    car_width: int
    part_ranks: dict[str, int]  # "mixed4b:237" -> 1-based rank by score into mixed4c:447
    top_into_car: list[tuple[int, float]]  # (mixed4b channel, score into mixed4c:447), best first

    def to_text(self) -> str:
        lines = [f"run {self.run_id}, circuit {self.circuit_id}, layers {', '.join(self.layers)}"]
        for layer, chans in self.channels.items():
            lines.append(f"  {layer:<8} {chans}")
        lines.append("known car circuit (Olah et al. 2020, 'Zoom In'):")
        lines.append(
            f"  mixed4c:447 car      in circuit: {self._yn('mixed4c:447')}   rank by CLA total: "
            f"{self.car_rank} of {self.car_width}"
        )
        for (layer, ch), what in PARTS.items():
            key = f"{layer}:{ch}"
            rank = self.part_ranks.get(key)
            lines.append(
                f"  {key:<12} {what:<15} in circuit: {self._yn(key)}   rank of its score into 447: "
                f"{rank if rank is not None else 'n/a'}"
            )
        if self.top_into_car:
            lines.append(
                "mixed4b neurons with the largest score into mixed4c:447: "
                + ", ".join(f"{c} ({s:.3g})" for c, s in self.top_into_car)
            )
        found = sum(self.known_in_circuit.values())
        lines.append(f"overlap with the known car circuit: {found} of {len(self.known_in_circuit)} neurons")
        return "\n".join(lines)

    def _yn(self, key: str) -> str:
        return "n/a" if key not in self.known_in_circuit else ("yes" if self.known_in_circuit[key] else "no")


def car_report(cat, run_id: int, circuit_id: int, *, top: int = 10) -> CarReport:
    """Compare a stored inceptionv1 run and circuit with the known car circuit."""
    from catalog import store

    with cat.session() as s:
        run = store.read_run(s, run_id)
        circ = store.read_circuit(s, circuit_id)
        mats = store.read_run_matrices(s, run_id)
    layers = tuple(run.layer_names)
    channels = {name: list(c) for name, c in zip(layers, circ.channels)}
    known = {f"{layer}:{ch}": ch in channels[layer] for layer, ch in [CAR, *PARTS] if layer in channels}
    car_rank, part_ranks, top_into = 0, {}, []
    if CAR[0] in layers:
        i = layers.index(CAR[0])
        total = np.zeros(run.widths[i])
        if i > 0:
            total += mats[i - 1].sum(axis=0)
        if i < len(mats):
            total += mats[i].sum(axis=1)
        car_rank = int((total > total[CAR[1]]).sum()) + 1
        if i > 0 and layers[i - 1] == "mixed4b":
            into = mats[i - 1][:, CAR[1]]  # (C_4b,) scores into mixed4c:447
            order = np.argsort(-into, kind="stable")
            top_into = [(int(c), float(into[c])) for c in order[:top]]
            for layer, ch in PARTS:
                part_ranks[f"{layer}:{ch}"] = int((into > into[ch]).sum()) + 1
    width = run.widths[layers.index(CAR[0])] if CAR[0] in layers else 0
    return CarReport(run_id, circuit_id, layers, channels, known, car_rank, width, part_ranks, top_into)


def plant_car_circuit(module, *, strength: float = 8.0) -> None:
    """Edit a random-init InceptionV1 in place so that mixed4b:237 and :373 feed mixed4c:447.

    mixed4b:237 and :373 sit in mixed4b's 3×3 branch (channels 160…383): large biases make them
    active on any image. mixed4c:447 is the last channel of mixed4c's 5×5 branch (384…447): its
    conv reads only bottleneck channel 0, which reads only those two neurons.
    """
    import torch

    with torch.no_grad():
        b3 = module.mixed4b_3x3_pre_relu_conv
        for ch in (237, 373):
            b3.weight[ch - 160].mul_(0.1)
            b3.bias[ch - 160] = strength
        red = module.mixed4c_5x5_bottleneck_pre_relu_conv
        red.weight[0].zero_()
        red.bias[0] = 0.0
        for ch in (237, 373):
            red.weight[0, ch, 0, 0] = 1.0
        c5 = module.mixed4c_5x5_pre_relu_conv
        c5.weight[447 - 384].zero_()
        c5.weight[447 - 384, 0] = strength / 25.0
        c5.bias[447 - 384] = 0.0


def planted_inputs(folder: Path, *, n: int = 4, seed: int = 0, weights: Path) -> None:
    """Write the stand-in's weights file and a folder of random images (the planted path rides on
    biases, so any image activates it)."""
    import torch
    from PIL import Image

    from ingest.zoo.inceptionv1 import build_inceptionv1

    torch.manual_seed(seed)
    net = build_inceptionv1()
    plant_car_circuit(net)
    torch.save(net.state_dict(), weights)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(folder / f"car{i}.png")


def run(
    weights: str,
    images: str,
    *,
    layers=DEFAULT_LAYERS,
    k: int = 5,
    db: str | None = None,
    input_size: int | None = None,
    top: int = 10,
    threads: int | None = None,
) -> CarReport:
    """Ingest the car concept on `inceptionv1` with `weights` and report on the car circuit."""
    from catalog.engine import open_catalog
    from ingest.image_sets import resolve_images
    from ingest.pipeline import IngestConfig, ingest_concept

    db = db or str(Path(tempfile.mkdtemp(prefix="car-circuit-")) / "car.duckdb")
    cat = open_catalog(db, create=True)
    image_set = resolve_images(images=images)
    config = IngestConfig(
        model="inceptionv1",
        concept="car",
        layers=tuple(layers),
        k=k,
        weights=weights,
        device="auto",
        input_size=input_size,
        threads=threads,
    )
    result = ingest_concept(cat, config, image_set)
    return car_report(cat, result.run_id, result.circuit_id, top=top)


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="Lucid InceptionV1 state dict (Lucent's inception5h conversion)")
    ap.add_argument("--images", help="folder of car photos")
    ap.add_argument("--layers", type=_names, default=DEFAULT_LAYERS)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--db", default=None, help="catalog file (default: a temporary one)")
    ap.add_argument("--input-size", type=int, default=None, help="default: the zoo's 224")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--planted-demo", action="store_true", help="run on the planted stand-in (no real weights)")
    args = ap.parse_args(argv)
    if args.planted_demo:
        tmp = Path(tempfile.mkdtemp(prefix="car-planted-"))
        planted_inputs(tmp / "cars", weights=tmp / "planted.pt")
        args.weights, args.images = str(tmp / "planted.pt"), str(tmp / "cars")
        args.layers, args.input_size = ("mixed4b", "mixed4c"), args.input_size or 96
        print("PLANTED STAND-IN: random-init InceptionV1 with the car path written into its weights")
    if not args.weights or not args.images:
        ap.error("give --weights FILE and --images DIR (or --planted-demo)")
    options = vars(args)  # every option but --planted-demo is a parameter of `run`, by the same name
    del options["planted_demo"]
    print(run(**options).to_text())


if __name__ == "__main__":
    main()
