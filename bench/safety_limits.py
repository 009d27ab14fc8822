"""Measure the safety limits: the time and memory a hostile input costs.

    .venv/bin/python bench/safety_limits.py [--big]

Prints one line per case: the huge-string `circuits sql` query and the same in the SQL box (only
with --big: each allocates ~3 GB in its process), `/compare` with 500 ids, the home page while a slow SQL query runs in the SQL box, a
YAML alias bomb, and a 4 GB sparse file named *.png in an image folder.
"""

from __future__ import annotations

import http.client
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path


def _get(port: int, path: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status, time.perf_counter() - t0


def main() -> None:
    from catalog.admin import init_catalog
    from catalog.engine import close_catalogs_of

    tmp = Path(tempfile.mkdtemp())
    db = tmp / "c.duckdb"
    init_catalog(str(db))
    close_catalogs_of(str(db))

    if "--big" in sys.argv:
        circuits = Path(sys.executable).with_name("circuits")
        query = "select repeat('x',100000000) as s from range(30)"
        t0 = time.perf_counter()
        r = subprocess.run(
            ["/usr/bin/time", "-f", "%M", circuits, "sql", query, "--timeout", "5", "--db", db],
            capture_output=True,
            text=True,
        )
        rss = int(r.stderr.strip().splitlines()[-1]) / 1e6
        print(
            f"sql huge strings: exit {r.returncode}, {time.perf_counter() - t0:.1f} s, {rss:.2f} GB RSS, "
            f"{len(r.stdout)} bytes printed: {r.stderr.splitlines()[0][:100]}"
        )

    from circuits.web.server import make_server

    server = make_server(str(db), "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    status, s = _get(port, "/compare?c=" + ",".join(["1"] * 500))
    print(f"/compare with 500 ids: HTTP {status} in {s * 1000:.0f} ms")
    slow = "/sql?q=" + urllib.parse.quote("select count(*) from range(100000000) a, range(100000000) b")

    def run_slow() -> None:
        status, seconds = _get(port, slow)
        print(f"slow SQL box query: HTTP {status} after {seconds:.1f} s")

    worker = threading.Thread(target=run_slow)
    worker.start()
    time.sleep(1.0)
    status, s = _get(port, "/")
    print(f"home page while it runs: HTTP {status} in {s * 1000:.0f} ms")
    worker.join()
    if "--big" in sys.argv:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        huge = "/sql?q=" + urllib.parse.quote("select repeat('x',100000000) as s from range(30)")
        status, s = _get(port, huge)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1e3
        print(
            f"SQL box, the huge-string query: HTTP {status} (an error on the page) in {s:.1f} s, server +{grown:.0f} MB"
        )
    server.shutdown()
    server.server_close()

    from ingest.fanout.jobs import JobFileError, load_jobs

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    lines += ["jobs:", "  - {model: catfish-mini, concept: c, dataset: 'catfish:star', k: 2, layers: *a8}"]
    (tmp / "bomb.yaml").write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    try:
        load_jobs(tmp / "bomb.yaml")
    except JobFileError:
        pass
    print(f"YAML alias bomb (10^9 values): refused in {(time.perf_counter() - t0) * 1000:.0f} ms")

    from PIL import Image

    from ingest.images import read_image_dir

    imgs = tmp / "imgs"
    imgs.mkdir()
    Image.new("RGB", (32, 32)).save(imgs / "a.png")
    with open(imgs / "big.png", "wb") as f:
        f.write((imgs / "a.png").read_bytes())
        f.truncate(4 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    image_set = read_image_dir(imgs)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1e3
    print(
        f"4 GB sparse big.png: skipped in {(time.perf_counter() - t0) * 1000:.0f} ms, peak RSS +{grown:.0f} MB "
        f"({image_set.skipped[0][1]})"
    )


if __name__ == "__main__":
    main()
