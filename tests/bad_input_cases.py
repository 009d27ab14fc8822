"""The bad-input cases: one list feeds the parametrised test (tests/test_bad_input.py) and the
table of docs/bad-input.md (`readme_table()`; the test checks the document holds exactly it).

Each case runs in a copy of a small world (a catalog with one run of a tiny user model, its
images, weights and an exported mask), with the working directory at the copy's root. Arguments
use placeholders: {db} catalog, {model} the tiny user model, {imgs} its images, {weights} its
weights file, {mask} a mask of its circuit, {cid}/{rid} its circuit and run ids. `prep` names a
function of this module that makes the bad file before the command runs.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tiny_model import TINY_MODEL  # noqa: F401 (re-exported: the bad-input tests write it as a user model)

README_START = "<!-- bad-input-table:start (generated from tests/bad_input_cases.py) -->"
README_END = "<!-- bad-input-table:end -->"


@dataclass(frozen=True)
class Case:
    """One bad input: what it is, the command, and words the one-line error must contain."""

    id: str
    area: str
    what: str
    argv: tuple[str, ...]
    expect: str
    prep: str | None = None
    needs_no_gpu: bool = False
    env: dict[str, str] = field(default_factory=dict)


def _ingest(*extra: str, concept: str = "fresh") -> tuple[str, ...]:
    return (
        "ingest",
        "{model}",
        "--concept",
        concept,
        "--images",
        "{imgs}",
        "--layers",
        "1,3,5",
        "--k",
        "2",
        "--weights",
        "{weights}",
        "--db",
        "{db}",
        *extra,
    )


def _with(argv: tuple[str, ...], flag: str, value: str) -> tuple[str, ...]:
    out = list(argv)
    out[out.index(flag) + 1] = value
    return tuple(out)


def _swap(argv: tuple[str, ...], old: str, new: str) -> tuple[str, ...]:
    return tuple(new if a == old else a for a in argv)


def _apply(*extra: str, mask: str = "{mask}", out: str = "pruned.pt") -> tuple[str, ...]:
    return ("apply", "{model}", "--mask", mask, "-o", out, "--weights", "{weights}", *extra)


def _sql(name: str, query: str, expect: str, *options: str, what: str = "", db: str = "{db}") -> Case:
    """A `circuits sql` case, `sql QUERY OPTIONS --db DB`, shown as `sql "QUERY"` unless `what` says more."""
    return Case(f"sql-{name}", "sql", what or f'`sql "{query}"`', ("sql", query, *options, "--db", db), expect)


CASES: list[Case] = [
    # --- catalogs and paths
    Case("db-folder", "catalog", "`--db` is a folder", ("list", "runs", "--db", "sub"), "is a folder", "make_folder"),
    Case(
        "db-missing-folder",
        "catalog",
        "`--db` in a folder that does not exist (ingest)",
        _with(_ingest(), "--db", "nodir/x.duckdb"),
        "does not exist",
    ),
    Case(
        "db-text-file",
        "catalog",
        "`--db` is a text file",
        ("list", "runs", "--db", "notes.txt"),
        "not a DuckDB catalog",
        "make_text",
    ),
    Case(
        "db-empty-file",
        "catalog",
        "`--db` is an empty file",
        ("sql", "select 1", "--db", "empty.duckdb"),
        "not a DuckDB catalog",
        "make_empty_db",
    ),
    Case(
        "db-corrupt",
        "catalog",
        "`--db` is a corrupt DuckDB file",
        ("show", "1", "--db", "corrupt.duckdb"),
        "is corrupt",
        "make_corrupt_db",
    ),
    Case(
        "db-corrupt-sql",
        "catalog",
        "`circuits sql` on a corrupt DuckDB file",
        ("sql", "select 1", "--db", "corrupt.duckdb"),
        "is corrupt",
        "make_corrupt_db",
    ),
    Case(
        "db-missing-file",
        "catalog",
        "`--db` names no file (a read command)",
        ("show", "1", "--db", "none.duckdb"),
        "no catalog at",
    ),
    Case(
        "db-url",
        "catalog",
        "`--db` is a URL of an unsupported database",
        ("list", "runs", "--db", "mysql://u@h/db"),
        "unsupported database",
    ),
    Case(
        "db-upgrade-text",
        "catalog",
        "`db upgrade` of a file that is not a catalog",
        ("db", "upgrade", "--db", "notes.txt"),
        "not a DuckDB catalog",
        "make_text",
    ),
    Case(
        "db-init-folder",
        "catalog",
        "`db init` on a folder",
        ("db", "init", "--db", "sub"),
        "is a folder",
        "make_folder",
    ),
    # --- images
    Case(
        "img-missing",
        "images",
        "`--images` folder does not exist",
        _with(_ingest(), "--images", "nope"),
        "does not exist",
    ),
    Case(
        "img-empty",
        "images",
        "`--images` folder without images",
        _with(_ingest(), "--images", "noimgs"),
        "no image files",
        "make_empty_images",
    ),
    Case(
        "img-file",
        "images",
        "`--images` is a file",
        _with(_ingest(), "--images", "notes.txt"),
        "not a folder",
        "make_text",
    ),
    Case(
        "img-corrupt",
        "images",
        "only a corrupt PNG",
        _with(_ingest(), "--images", "bad"),
        "can be read",
        "make_corrupt_png",
    ),
    Case(
        "img-bomb",
        "images",
        "only a 20000×20000 PNG (decompression bomb)",
        _with(_ingest(), "--images", "bomb"),
        "can be read",
        "make_bomb",
    ),
    Case(
        "img-thin",
        "images",
        "only a 1×40000 PNG (absurd aspect ratio)",
        _with(_ingest(), "--images", "thin"),
        "can be read",
        "make_thin",
    ),
    Case(
        "img-both",
        "images",
        "both `--images` and `--dataset`",
        (*_ingest(), "--dataset", "catfish:stripes"),
        "exactly one",
    ),
    Case(
        "img-dataset",
        "images",
        "unknown `--dataset`",
        ("ingest", "{model}", "--concept", "fresh", "--dataset", "nope:x", "--layers", "1,3,5", "--db", "{db}"),
        "unknown dataset",
    ),
    # --- concept names
    Case("name-empty", "names", 'concept name `""`', _ingest(concept=""), "is empty"),
    Case("name-blank", "names", 'concept name `"   "`', _ingest(concept="   "), "is empty"),
    Case("name-comma", "names", "concept name `a,b`", _ingest(concept="a,b"), "comma"),
    Case("name-newline", "names", "concept name with a newline", _ingest(concept="a\nb"), "control character"),
    Case("name-digits", "names", "concept name `12` (reads as an id)", _ingest(concept="12"), "all digits"),
    Case("name-space", "names", "concept name with a leading space", _ingest(concept=" stripes"), "whitespace"),
    Case("name-long", "names", "concept name of 201 characters", _ingest(concept="x" * 201), "longer than"),
    # --- ingest options
    Case(
        "layers-order",
        "options",
        "`--layers` in the wrong order",
        _with(_ingest(), "--layers", "5,3,1"),
        "forward order",
    ),
    Case("layers-unknown", "options", "`--layers` names no module", _with(_ingest(), "--layers", "1,nope"), "nope"),
    Case("layers-one", "options", "one layer only", _with(_ingest(), "--layers", "1"), "at least two layers"),
    Case("batch-zero", "options", "`--batch-size 0`", (*_ingest(), "--batch-size", "0"), "at least 1"),
    Case(
        "device-cuda",
        "options",
        "`--device cuda` without a GPU",
        (*_ingest(), "--device", "cuda"),
        "CUDA is not available",
        needs_no_gpu=True,
    ),
    Case("device-bad", "options", "`--device tpu9`", (*_ingest(), "--device", "tpu9"), "unknown device"),
    Case("k-zero", "options", "`--k 0`", _with(_ingest(), "--k", "0"), "at least 1"),
    Case("k-large", "options", "`--k` larger than a layer", _with(_ingest(), "--k", "99"), "larger than layer"),
    Case("k-count", "options", "`--k` with the wrong number of values", _with(_ingest(), "--k", "1,2"), "has 2 values"),
    Case("k-text", "options", "`--k abc`", _with(_ingest(), "--k", "abc"), "--k takes"),
    # --- models and weights
    Case("model-unknown", "models", "unknown model name", _swap(_ingest(), "{model}", "resnet9000"), "unknown model"),
    Case(
        "model-unknown-new-db",
        "models",
        "unknown model, into a catalog file that does not exist yet",
        _with(_swap(_ingest(), "{model}", "resnet9000"), "--db", "new.duckdb"),
        "unknown model",
    ),
    Case(
        "model-no-file",
        "models",
        "factory file does not exist",
        _swap(_ingest(), "{model}", "nope.py:build"),
        "does not exist",
    ),
    Case(
        "model-no-factory",
        "models",
        "factory name not in the file",
        _swap(_ingest(), "{model}", "tiny.py:nothere"),
        "no callable",
    ),
    Case(
        "model-raises",
        "models",
        "the factory raises",
        _swap(_ingest(), "{model}", "boom.py:build"),
        "factory's own code",
        "make_boom_model",
    ),
    Case(
        "model-import-fails",
        "models",
        "the factory's file fails to import",
        _swap(_ingest(), "{model}", "syntax.py:build"),
        "error is in that file",
        "make_syntax_model",
    ),
    Case(
        "weights-missing",
        "weights",
        "`--weights` file does not exist",
        _with(_ingest(), "--weights", "nope.pt"),
        "does not exist",
    ),
    Case(
        "weights-text",
        "weights",
        "`--weights` is a text file",
        _with(_ingest(), "--weights", "notes.txt"),
        "cannot read weights",
        "make_text",
    ),
    Case(
        "weights-pickle",
        "weights",
        "`--weights` is a malicious pickle",
        _with(_ingest(), "--weights", "evil.pt"),
        "not a state dict",
        "make_evil_pickle",
    ),
    Case(
        "weights-other",
        "weights",
        "`--weights` of another model",
        _with(_ingest(), "--weights", "other.pt"),
        "weights",
        "make_other_weights",
    ),
    Case(
        "featurevis-other-weights",
        "weights",
        "`thumbnails --featurevis` with weights other than the run's",
        ("thumbnails", "{rid}", "{model}", "--featurevis", "--weights", "w2.pt", "--db", "{db}"),
        "weights",
        "make_perturbed_weights",
    ),
    Case(
        "featurevis-missing-weights",
        "weights",
        "`thumbnails --featurevis` with a weights file that does not exist",
        ("thumbnails", "{rid}", "{model}", "--featurevis", "--weights", "nope.pt", "--db", "{db}"),
        "does not exist",
    ),
    Case(
        "reference-no-images",
        "images",
        "`thumbnails --reference` folder without readable images",
        ("thumbnails", "{rid}", "{model}", "--reference", "bad", "--weights", "{weights}", "--db", "{db}"),
        "can be read",
        "make_corrupt_png",
    ),
    # --- masks and outputs
    Case("mask-missing", "masks", "`apply --mask` does not exist", _apply(mask="nope.json"), "does not exist"),
    Case("mask-garbage", "masks", "`apply --mask` is not a mask", _apply(mask="notes.txt"), "not a mask", "make_text"),
    Case(
        "mask-bad-json",
        "masks",
        "`apply --mask` is broken JSON",
        _apply(mask="broken.json"),
        "not valid JSON",
        "make_broken_json",
    ),
    Case(
        "mask-deep",
        "masks",
        "`apply --mask` nested 100000 levels deep",
        _apply(mask="deep.json"),
        "nested",
        "make_deep_json",
    ),
    Case(
        "mask-huge",
        "masks",
        "`apply --mask` of 200 MB",
        _apply(mask="huge.json"),
        "larger than any mask",
        "make_huge_mask",
    ),
    Case(
        "mask-other-model",
        "masks",
        "`apply` a mask made for another model",
        ("apply", "catfish-mini", "--mask", "{mask}", "-o", "pruned.pt"),
        "was made for model",
    ),
    Case(
        "apply-over-weights",
        "outputs",
        "`apply -o` is its own `--weights`",
        _apply(out="{weights}"),
        "input of this command",
    ),
    Case(
        "apply-over-mask", "outputs", "`apply -o` is its own `--mask` (a .json)", _apply(out="{mask}"), "name the file"
    ),
    Case("apply-suffix", "outputs", "`apply -o x.txt`", _apply(out="x.txt"), "name the file"),
    Case("apply-no-folder", "outputs", "`apply -o` into a missing folder", _apply(out="nodir/x.pt"), "does not exist"),
    Case(
        "export-suffix",
        "outputs",
        "`export -o m.pt`",
        ("export", "{cid}", "-o", "m.pt", "--db", "{db}"),
        "name the file",
    ),
    Case(
        "export-no-folder",
        "outputs",
        "`export -o` into a missing folder",
        ("export", "{cid}", "-o", "nodir/m.json", "--db", "{db}"),
        "does not exist",
    ),
    Case(
        "export-folder",
        "outputs",
        "`export -o` is a folder",
        ("export", "{cid}", "-o", "sub.json", "--db", "{db}"),
        "is a folder",
        "make_folder_json",
    ),
    Case(
        "plot-suffix",
        "outputs",
        "`overlap --plot g.txt`",
        ("overlap", "--model", "{model}", "--plot", "g.txt", "--db", "{db}"),
        "name the file",
    ),
    # --- outputs that would overwrite an input
    Case(
        "export-over-catalog",
        "outputs",
        "`export -o cat.json --db cat.json` (the catalog it reads)",
        ("export", "{cid}", "-o", "cat.json", "--db", "cat.json"),
        "also an input",
        "make_catalog_copies",
    ),
    Case(
        "export-hard-link-catalog",
        "outputs",
        "`export -o link.json`, a hard link of the catalog",
        ("export", "{cid}", "-o", "link.json", "--db", "{db}"),
        "also an input",
        "make_catalog_copies",
    ),
    Case(
        "report-over-catalog",
        "outputs",
        "`report -o cat.html --db cat.html`",
        ("report", "{cid}", "-o", "cat.html", "--db", "cat.html"),
        "also an input",
        "make_catalog_copies",
    ),
    Case(
        "overlap-plot-over-catalog",
        "outputs",
        "`overlap --plot cat.png --db cat.png`",
        ("overlap", "--model", "{model}", "--plot", "cat.png", "--db", "cat.png"),
        "also an input",
        "make_catalog_copies",
    ),
    Case(
        "apply-over-bundled-weights",
        "outputs",
        "`apply catfish-mini -o` a symlink to the bundled weights it loads",
        ("apply", "catfish-mini", "--mask", "{mask}", "-o", "bundled.pt"),
        "bundled weights",
        "make_bundled_link",
    ),
    Case(
        "apply-over-mask",
        "outputs",
        "`apply -o` a hard link of its own mask",
        _apply(out="mask-link.pt"),
        "also an input",
        "make_mask_link",
    ),
    Case(
        "demo-over-catalog",
        "outputs",
        "`demo --out out --db out/report.md` (the report would replace the catalog)",
        ("demo", "--out", "out", "--db", "out/report.md"),
        "also an input",
        "make_catalog_in_out",
    ),
    Case(
        "defend-plot-missing-folder",
        "outputs",
        "`defend --plot nodir/x.png` (checked before any run is stored)",
        ("defend", "typo-mini", "--plot", "nodir/x.png", "--db", "{db}"),
        "does not exist",
    ),
    Case(
        "defend-plot-suffix",
        "outputs",
        "`defend --plot x.txt`",
        ("defend", "typo-mini", "--plot", "x.txt", "--db", "{db}"),
        "unsupported file type",
    ),
    Case(
        "mask-duplicate-key",
        "masks",
        "a mask JSON with a key twice (JSON would keep the last)",
        _apply(mask="dup.json"),
        "duplicated key",
        "make_dup_mask",
    ),
    Case(
        "jobs-alias-bomb",
        "ingest",
        "a job file whose YAML aliases expand to 10⁹ values",
        ("ingest-many", "bomb.yaml", "--db", "{db}"),
        "alias",
        "make_alias_bomb",
    ),
    Case(
        "serve-port-range",
        "serve",
        "`serve --port 70000`",
        ("serve", "--port", "70000", "--db", "{db}"),
        "not a TCP port",
    ),
    # --- catalog content that must not be trusted
    Case(
        "ablate-user-model",
        "trust",
        "`ablate` a user model's circuit without `--model`",
        ("ablate", "{cid}", "--images", "{imgs}", "--db", "{db}"),
        "never run",
    ),
    Case(
        "ablate-zoo-mismatch",
        "trust",
        "`ablate --model` another (zoo) model",
        ("ablate", "{cid}", "--model", "catfish-mini", "--images", "{imgs}", "--db", "{db}"),
        "was found on",
    ),
    # --- references
    Case("circuit-unknown", "references", "`show 999`", ("show", "999", "--db", "{db}"), "no circuit 999"),
    Case(
        "concept-unknown",
        "references",
        "`show` an unknown concept",
        ("show", "nosuch", "--db", "{db}"),
        "neither a circuit id",
    ),
    Case(
        "export-unknown",
        "references",
        "`export 999`",
        ("export", "999", "-o", "m.json", "--db", "{db}"),
        "no circuit 999",
    ),
    Case("refine-unknown", "references", "`refine 999`", ("refine", "999", "--k", "2", "--db", "{db}"), "no run 999"),
    Case(
        "refine-k-zero",
        "references",
        "`refine RUN --k 0`",
        ("refine", "{rid}", "--k", "0", "--db", "{db}"),
        "at least 1",
    ),
    Case(
        "ablate-unknown",
        "references",
        "`ablate` an unknown concept",
        ("ablate", "nosuch", "--images", "{imgs}", "--db", "{db}"),
        "neither a circuit id",
    ),
    # --- SQL
    _sql("delete", "delete from run", "read-only"),
    _sql("copy", "copy run to 'x.csv'", "error"),
    _sql("read-file", "select * from read_csv('/etc/passwd')", "disabled"),
    _sql("attach", "attach 'x.duckdb' as x", "error", what="`sql \"attach 'x.duckdb'\"`"),
    _sql("begin", "begin", "transaction control"),
    _sql("utf8", "select '\udcff'", "not valid UTF-8", what="`sql` with invalid UTF-8"),
    _sql("syntax", "selec 1", "syntax error"),
    _sql("empty", "", "empty"),
    _sql(
        "timeout",
        "select count(*) from range(100000) a, range(100000) b, range(100000) c",
        "ran longer than",
        "--timeout",
        "0.5",
        what="`sql` three-way cross join with `--timeout 0.5`",
    ),
    _sql(
        "max-bytes",
        "select repeat('x', 100000) as s from range(100)",
        "larger than 1 MB",
        "--max-bytes",
        "1MB",
        what="`sql` with a result past `--max-bytes 1MB` (default 100 MB)",
    ),
    _sql(
        "set-limit", "set memory_limit='50GB'", "locked", what="`sql \"set memory_limit='50GB'\"` (settings are locked)"
    ),
    _sql(
        "url-options",
        "select 1",
        "memory_limit",
        what="`sql --db 'duckdb:///c.duckdb?memory_limit=50GB'`",
        db="duckdb:///c.duckdb?memory_limit=50GB",
    ),
    # --- from a circuit to a deployed model
    Case(
        "anchor-not-last",
        "anchor",
        "`ingest --anchor 1` whose `--layers` do not end at the class layer",
        _ingest("--anchor", "1"),
        "must be the last of --layers: add 8",
    ),
    Case(
        "anchor-no-names",
        "anchor",
        "`ingest --anchor zebra` on a model without class names (no `--classes`)",
        _with(_ingest("--anchor", "zebra"), "--layers", "1,3,8"),
        "this model has no class names",
    ),
    Case(
        "keep-unknown",
        "prune plans",
        "`prune-plan --keep` naming no concept or evaluated image set",
        ("prune-plan", "--model", "tiny.py:build", "--against", "noise", "--keep", "nothing_like_it", "--db", "{db}"),
        "neither a concept",
    ),
]


def readme_table() -> str:
    """The bad-input table of docs/bad-input.md, one row per case."""
    lines = ["| # | Area | Bad input | `error:` line says |", "|---|---|---|---|"]
    for i, case in enumerate(CASES, 1):
        lines.append(f"| {i} | {case.area} | {case.what} | …{case.expect}… |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- preparations


def make_folder(root: Path) -> None:
    (root / "sub").mkdir()


def make_folder_json(root: Path) -> None:
    (root / "sub.json").mkdir()


def make_text(root: Path) -> None:
    (root / "notes.txt").write_text("just some notes\n")


def make_empty_db(root: Path) -> None:
    (root / "empty.duckdb").write_bytes(b"")


def make_corrupt_db(root: Path) -> None:
    data = bytearray((root / "c.duckdb").read_bytes())
    for i in range(4096, len(data), 7):  # keep the magic header, damage the blocks
        data[i] ^= 0x5A
    (root / "corrupt.duckdb").write_bytes(bytes(data))


def make_empty_images(root: Path) -> None:
    (root / "noimgs").mkdir()


def make_corrupt_png(root: Path) -> None:
    (root / "bad").mkdir()
    (root / "bad" / "broken.png").write_bytes(b"\x89PNG broken")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height (the pixels are never needed: refused first)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_bomb(root: Path) -> None:
    (root / "bomb").mkdir()
    (root / "bomb" / "big.png").write_bytes(_png_header_only(20000, 20000))


def make_thin(root: Path) -> None:
    from PIL import Image

    (root / "thin").mkdir()
    Image.new("RGB", (1, 40000)).save(root / "thin" / "thin.png")


def make_boom_model(root: Path) -> None:
    (root / "boom.py").write_text("def build():\n    raise ValueError('no such layer config')\n")


def make_syntax_model(root: Path) -> None:
    (root / "syntax.py").write_text("def build(:\n    pass\n")


def make_evil_pickle(root: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {root / 'PWNED'}",))

    (root / "evil.pt").write_bytes(pickle.dumps(Evil()))


def make_other_weights(root: Path) -> None:
    import torch
    from torch import nn

    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3)).state_dict(), root / "other.pt")


def make_perturbed_weights(root: Path) -> None:
    """The tiny model's weights with every value moved: same shapes, another sha256."""
    import torch

    state = torch.load(root / "w.pt", weights_only=True)
    torch.save({k: v + 1.0 for k, v in state.items()}, root / "w2.pt")


def make_broken_json(root: Path) -> None:
    (root / "broken.json").write_text('{"format": ')


def make_deep_json(root: Path) -> None:
    (root / "deep.json").write_text('{"modules": ' + "[" * 100_000 + "]" * 100_000 + "}")


def make_huge_mask(root: Path) -> None:
    with open(root / "huge.json", "wb") as f:  # sparse: 200 MB on paper, nothing on disk
        f.write(b'{"format": "circuit-mask", "modules": {')
        f.truncate(200 << 20)


def make_catalog_copies(root: Path) -> None:
    import shutil

    for name in ("cat.json", "cat.html", "cat.png"):
        shutil.copyfile(root / "c.duckdb", root / name)
    os.link(root / "c.duckdb", root / "link.json")


def make_catalog_in_out(root: Path) -> None:
    import shutil

    (root / "out").mkdir()
    shutil.copyfile(root / "c.duckdb", root / "out" / "report.md")


def make_bundled_link(root: Path) -> None:
    bundled = Path(__file__).resolve().parents[1] / "ingest" / "weights" / "catfish_mini.pt"
    (root / "bundled.pt").symlink_to(bundled)


def make_mask_link(root: Path) -> None:
    os.link(root / "m.json", root / "mask-link.pt")


def make_dup_mask(root: Path) -> None:
    text = (root / "m.json").read_text()
    (root / "dup.json").write_text(text.replace('"modules": {', '"modules": {"zzz": [0], "zzz": [1], ', 1))


def make_alias_bomb(root: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    lines += ["jobs:", "  - {model: catfish-mini, concept: c, dataset: 'catfish:star', k: 2, layers: *a8}"]
    (root / "bomb.yaml").write_text("\n".join(lines) + "\n")
