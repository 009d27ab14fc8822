"""How close the score-matrix codec is to what any lossless per-value coder could reach.

    python bench/bench_codec_bound.py [--runs 2] [--db CATALOG --run ID ...]

For googlenet-sized runs with a real run's score distribution (`bench_catalog_scale.real_like_run`:
dead rows and columns, log-normal values) and for the stored runs of any catalog given, prints per
run: the scores, the share stored (non-zero bit patterns), the blob `encode_matrix` writes, and the
order-0 entropy of each byte plane of the stored values (what an ideal entropy coder of independent
bytes would need), plus that of the exponent after subtracting a per-row + per-column prediction
(the structure a context model could use). Everything in bytes per run.

The point: float32 mantissas of measured scores are noise, ~23 incompressible bits per non-zero
value, so once zeros are a bitmap and the exponent byte is entropy-coded (what codec
`f32-nz-shuffle-zstd` does) there is little left for any lossless codec to win.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_catalog_scale import real_like_run  # noqa: E402 (bench/ is on sys.path when a bench runs)

from catalog import store  # noqa: E402 (after the set-up above)
from catalog.engine import open_catalog  # noqa: E402 (after the set-up above)
from catalog.matrix_codec import encode_matrix  # noqa: E402 (after the set-up above)


def entropy_bytes(symbols: np.ndarray) -> float:
    """Order-0 entropy of `symbols` in bytes (Σ -log2 p over the sample / 8)."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() * symbols.size / 8)


def exponent_residual(bits: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Stored values' sign+exponent minus a per-row median + per-column median prediction (integers)."""
    se = (bits >> 23).astype(np.float64)  # (m, n) sign and exponent, 0..511
    se[~stored] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-zero (dead) rows have no median
        row = np.nan_to_num(np.nanmedian(se, axis=1)).round()  # (m,)
        col = np.nan_to_num(np.nanmedian(se - row[:, None], axis=0)).round()  # (n,)
    return (se - row[:, None] - col[None, :])[stored].astype(np.int64)


def analyse(label: str, mats: list[np.ndarray]) -> None:
    zstd = pa.Codec("zstd", compression_level=1)
    n = nnz = blob = bitmap = 0
    planes = np.zeros(4)
    resid = 0.0
    for scores in mats:
        bits = np.ascontiguousarray(scores, dtype="<f4").view("<u4")
        stored = bits != 0
        values = bits[stored]
        n, nnz, blob = n + bits.size, nnz + values.size, blob + len(encode_matrix(scores))
        bitmap += len(zstd.compress(np.packbits(stored.ravel()), asbytes=True))
        for j in range(4):
            planes[j] += entropy_bytes((values >> (8 * j)) & 255)
        exp_bits = entropy_bytes(values >> 23) * 8  # sign + exponent
        res_bits = entropy_bytes(exponent_residual(bits, stored)) * 8
        resid += (exp_bits - res_bits) / 8
    bound = bitmap + planes.sum()
    print(
        f"{label:<28} {n:>10,} {nnz / n:7.1%} {blob:>11,} {bound:>11,.0f} {blob / bound - 1:8.1%} "
        f"{planes[0] + planes[1] + planes[2]:>11,.0f} {planes[3]:>10,.0f} {resid:>10,.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2, help="synthetic googlenet-sized runs")
    ap.add_argument("--db", help="also a catalog's stored runs")
    ap.add_argument("--run", type=int, action="append", default=[], help="run ids of --db (repeatable)")
    args = ap.parse_args()
    print(
        f"{'run':<28} {'scores':>10} {'stored':>7} {'blob B':>11} {'bound B':>11} {'over':>8} "
        f"{'low 3 bytes':>11} {'top byte':>10} {'ctx saves':>10}"
    )
    rng = np.random.default_rng(0)
    for r in range(args.runs):
        analyse(f"synthetic googlenet {r}", real_like_run(rng))
    if args.db:
        cat = open_catalog(args.db, read_only=True)
        with cat.session() as s:
            for run_id in args.run:
                analyse(f"{Path(args.db).name} run {run_id}", store.read_run_matrices(s, run_id))
        cat.close()


if __name__ == "__main__":
    main()
