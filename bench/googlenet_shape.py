"""googlenet's block outputs and their widths, for benches that build synthetic catalogs without
torch (the real model's `inception3a` … `inception5b`, as `circuits ingest googlenet` cuts it)."""

GOOGLENET = [
    ("inception3a", 256),
    ("inception3b", 480),
    ("inception4a", 512),
    ("inception4b", 512),
    ("inception4c", 512),
    ("inception4d", 528),
    ("inception4e", 832),
    ("inception5a", 832),
    ("inception5b", 1024),
]
NAMES = [n for n, _ in GOOGLENET]
WIDTHS = [w for _, w in GOOGLENET]
