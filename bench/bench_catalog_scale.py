"""A catalog of N runs as a benchmark: latency of each CLI command and page, file size, memory peak.

    python bench/bench_catalog_scale.py --runs 1000 [--matrix-runs 4] [--circuits-per-run 5] [--concepts 200]

What it builds (DuckDB; a temporary file unless --db):

- `--matrix-runs` googlenet-sized runs written through `catalog.store` (nine inception outputs,
  3,146,752 scores a run) with a real run's score distribution: dead rows and columns (a dead
  ReLU channel attributes nothing: 11.7 % of rows and of columns all zero, so ~22 % exact zeros,
  as measured on googlenet: 21–23 %), the rest log-normal around a median of 2.7e-7 with a
  spread of 1.3 decades (σ of log10), capped at 0.2; mantissas random. Each run gets
  `--circuits-per-run` circuits of k = 10 per layer from overlapping channel pools, with their
  internal edges.
- The other runs are copies of those rows in SQL (run, run_key, circuit, circuit_neuron,
  circuit_edge; new ids, provenance keys and concepts among `--concepts`), as the earlier
  10,000-run measurement had: the copies have no score matrices or top edges of their own, so the
  file size printed is that of this catalog, not N runs' storage (that is `bench/bench_storage.py`);
  every listing, page and overlap sees all N runs and their circuits; refine reads run 1.

Then each command runs in a fresh process (as a user runs it) and the bench prints its wall
time, its output's size and its peak memory (max RSS of that process), and the same for the
`serve` pages fetched over HTTP (the server's peak RSS at the end).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from googlenet_shape import GOOGLENET, WIDTHS  # noqa: E402 (bench/ is on sys.path when a bench runs)
from synthetic_runs import write_circuits, write_run  # noqa: E402 (bench/ is on sys.path when a bench runs)

from catalog import store  # noqa: E402 (after the set-up above)
from catalog.engine import close_all, open_catalog  # noqa: E402 (after the set-up above)

K = 10
DEAD = 0.117  # fraction of channels whose rows (as source) or columns (as target) are all zero
MEDIAN, SPREAD = 2.7e-7, 1.3  # log-normal: median and σ of log10


def real_like_run(rng: np.random.Generator) -> list[np.ndarray]:
    """A run's eight (C_i, C_{i+1}) float32 score matrices with dead rows/columns (docstring)."""
    dead = [rng.random(w) < DEAD for w in WIDTHS]  # (C_i,) per layer: a dead channel
    out = []
    for i, (m, n) in enumerate(zip(WIDTHS, WIDTHS[1:])):
        scores = np.minimum(10.0 ** rng.normal(np.log10(MEDIAN), SPREAD, size=(m, n)), 0.2).astype(np.float32)
        scores[dead[i], :] = 0
        scores[:, dead[i + 1]] = 0
        out.append(scores)
    return out


def build(db: str, n_runs: int, matrix_runs: int, per_run: int, n_concepts: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    cat = open_catalog(db, create=True)
    t = time.perf_counter()
    with cat.session() as s, s.begin():
        model = store.ensure_model(
            s, name="googlenet", architecture="synthetic", weights_sha256="0" * 64, layers=GOOGLENET
        )
        concepts = [store.ensure_concept(s, f"concept{c:04d}") for c in range(n_concepts)]
    zeros = []
    pools = [rng.choice(w, 40, replace=False) for w in WIDTHS]
    for r in range(matrix_runs):
        mats = real_like_run(rng)
        zeros.append(float(sum((m == 0).sum() for m in mats) / sum(m.size for m in mats)))
        with cat.session() as s, s.begin():
            run_id = write_run(s, model, concepts[r % n_concepts], mats, f"{r:064x}", image_set_sha256=f"{r:064d}")
            channel_sets = [[sorted(rng.choice(p, K, replace=False).tolist()) for p in pools] for _ in range(per_run)]
            write_circuits(s, run_id, channel_sets)
    written = time.perf_counter() - t
    t = time.perf_counter()
    with cat.session() as s, s.begin():
        copy_rows(s, n_runs, matrix_runs, per_run, concepts)
    copied = time.perf_counter() - t
    close_all()
    return {"matrix runs written (s)": written, "rows copied (s)": copied, "exact zeros": float(np.mean(zeros))}


def copy_rows(s, n_runs: int, matrix_runs: int, per_run: int, concepts: list[int]) -> None:
    """Runs matrix_runs+1..n_runs as copies of the first runs' rows (module docstring)."""
    from sqlalchemy import text

    c_lo, c_n = concepts[0], len(concepts)
    s.execute(
        text("CREATE TEMP TABLE copies AS SELECT i AS new_id, 1 + (i - 1) % :m AS src_id FROM range(:a, :b) t(i)"),
        {"m": matrix_runs, "a": matrix_runs + 1, "b": n_runs + 1},
    )
    s.execute(
        text(
            "INSERT INTO run SELECT c.new_id, r.model_id, :lo + (c.new_id - 1) % :nc, r.layer_names, r.params, "
            "r.image_set_sha256, r.n_images, printf('%064x', c.new_id - 1), r.library_versions, r.device, r.status, "
            "r.error, r.started_at + to_seconds(c.new_id), r.finished_at, r.seconds FROM copies c JOIN run r ON r.id = c.src_id"
        ),
        {"lo": c_lo, "nc": c_n},
    )
    s.execute(text("INSERT INTO run_key SELECT printf('%064x', new_id - 1), new_id FROM copies"))
    s.execute(
        text(
            "CREATE TEMP TABLE circuit_copies AS SELECT ci.id AS src_cid, c.new_id AS run_id, "
            "(SELECT max(id) FROM circuit) + row_number() OVER (ORDER BY c.new_id, ci.id) AS new_cid "
            "FROM copies c JOIN circuit ci ON ci.run_id = c.src_id"
        )
    )
    s.execute(
        text(
            "INSERT INTO circuit SELECT cc.new_cid, cc.run_id, ci.k, ci.fixed, ci.sweeps, ci.converged, ci.objective, "
            "ci.objective_history, ci.created_at + to_seconds(cc.run_id) FROM circuit_copies cc JOIN circuit ci ON ci.id = cc.src_cid"
        )
    )
    s.execute(
        text(
            "INSERT INTO circuit_neuron SELECT cc.new_cid, n.neuron_id FROM circuit_copies cc JOIN circuit_neuron n ON n.circuit_id = cc.src_cid"
        )
    )
    s.execute(
        text(
            "INSERT INTO circuit_edge SELECT cc.new_cid, cc.run_id, e.src_neuron_id, e.dst_neuron_id, e.score "
            "FROM circuit_copies cc JOIN circuit_edge e ON e.circuit_id = cc.src_cid"
        )
    )
    for seq in ("run_id_seq", "circuit_id_seq"):
        table = seq.removesuffix("_id_seq")
        top = s.execute(text(f"SELECT max(id) FROM {table}")).scalar()
        while s.execute(text(f"SELECT nextval('{seq}')")).scalar() < top:  # new rows after the copies
            pass


MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
try:
    r = subprocess.run(sys.argv[2:], capture_output=True, timeout=float(sys.argv[1]))
    size, rc = len(r.stdout), r.returncode
except subprocess.TimeoutExpired:
    size, rc = 0, "timeout"
wall = time.perf_counter() - t
print(wall, size, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)
"""


def run_cli(args: list[str], timeout: float) -> tuple[float, int, float, str]:
    """(wall s, output bytes, peak RSS MB, note) of one command in a fresh process."""
    cmd = [sys.executable, "-c", MEASURE, str(timeout), sys.executable, "-m", "circuits", *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall, size, rss, rc = out.stdout.split()
    note = "" if rc == "0" else (f"stopped after {timeout:.0f} s" if rc == "timeout" else f"exit {rc}")
    return float(wall), int(size), int(rss) / 1024, note


def serve_pages(db: str, paths: list[str]) -> tuple[list[tuple[str, float, int, str]], float]:
    """(path, wall s, bytes, note) per page, and the server's peak RSS in MB (VmHWM)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "circuits", "serve", "--db", db, "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = None
        assert server.stdout is not None
        for line in server.stdout:
            if "http://" in line:
                base = line[line.index("http://") :].split()[0].rstrip("/")
                break
        assert base is not None, "serve printed no address"
        out = []
        for p in paths:
            t = time.perf_counter()
            try:
                body, note = urllib.request.urlopen(base + p, timeout=120).read(), ""
            except urllib.error.HTTPError as exc:
                body = exc.read()
                found = re.search(rb"<p[^>]*>(.*?)</p>", body, re.S)
                note = f"HTTP {exc.code}: " + (found.group(1).decode()[:120] if found else "")
            out.append((p, time.perf_counter() - t, len(body), note))
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024
        return out, peak
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--matrix-runs", type=int, default=4, help="runs written with score matrices")
    parser.add_argument("--circuits-per-run", type=int, default=5)
    parser.add_argument("--concepts", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=120, help="stop a command after this many seconds")
    parser.add_argument("--db", help="build here (default: a temporary file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "scale.duckdb")
        built = build(db, args.runs, args.matrix_runs, args.circuits_per_run, args.concepts)
        size = Path(db).stat().st_size / 2**20
        n_circuits = args.runs * args.circuits_per_run
        print(f"catalog: {args.runs} runs, {n_circuits} circuits, {args.concepts} concepts; file {size:.1f} MB")
        print(json.dumps(built))
        commands = [
            ("list runs", ["list", "runs"]),
            ("list circuits", ["list", "circuits"]),
            ("show 1", ["show", "1"]),
            ("sql count circuit_neurons_v", ["sql", "select count(*) from circuit_neurons_v"]),
            ("overlap weighted (default)", ["overlap", "--model", "googlenet", "--metric", "weighted"]),
            ("refine 1 --k 5", ["refine", "1", "--k", "5"]),
        ]
        print("\n| command | wall (s) | output (kB) | peak RSS (MB) | note |\n|---|---:|---:|---:|---|")
        for name, cli in commands:
            wall, nbytes, rss, note = run_cli([*cli, "--db", db], args.timeout)
            print(f"| `circuits {name}` | {wall:.2f} | {nbytes / 1024:.0f} | {rss:.0f} | {note} |", flush=True)
        print("\n| page | wall (s) | HTML (kB) | note |\n|---|---:|---:|---|")
        last = args.matrix_runs * args.circuits_per_run  # the last circuit of a run with matrices (copies have none)
        pages, peak = serve_pages(db, ["/", "/circuit/1", f"/circuit/{last}"])
        for path, wall, nbytes, note in pages:
            print(f"| `{path}` | {wall:.2f} | {nbytes / 1024:.0f} | {note} |", flush=True)
        print(f"serve: peak RSS {peak:.0f} MB after these pages")


if __name__ == "__main__":
    main()
