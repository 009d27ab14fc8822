"""Checks of command-line input that run before a command has any side effect.

Each function raises a one-line `CircuitsError` (converted by the root CLI) or returns the checked
value, so a refused command leaves no catalog row, file or folder behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from catalog.errors import CircuitsError

__all__ = [
    "InputError",
    "catalog_files",
    "check_batch_size",
    "check_device",
    "check_output_path",
    "model_file",
    "new_catalog_guard",
]


class InputError(CircuitsError):
    """A command-line value that cannot work, found before anything was done."""


def check_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1 (got {batch_size})")
    return batch_size


def check_device(device: str) -> str:
    """The device, if torch can use it here (`--device cuda` without a GPU is refused)."""
    from ingest.hooks import resolve_device

    resolve_device(device)  # DeviceError (a CircuitsError) names auto/cpu
    return device


def check_output_path(
    out: str | os.PathLike[str],
    *,
    suffixes: tuple[str, ...],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    folders: Iterable[str | os.PathLike[str] | None] = (),
    what: str = "output",
) -> Path:
    """An output file path that can be written: known suffix, existing writable folder, not an input.

    Call it before any work, so a bad path costs nothing. Besides `inputs`, the bundled weights
    (`ingest/weights/`) and the model caches (torch hub, Hugging Face) are inputs of every command:
    a file there is never overwritten. Same file means `os.path.samefile` (symlinks and hard links
    included) or the same resolved path.

    Args:
        out: the path the command will write.
        suffixes: accepted suffixes, lower case with the dot (".json").
        inputs: paths the same command reads (the catalog: `catalog_files(db)`; weights; the mask;
            a model file); writing over one of them is refused.
        folders: folders the command reads every file of (image folders); writing inside is refused.
        what: the option, for messages ("-o").

    Raises:
        InputError: unknown suffix, a folder, a missing or read-only folder, or an input path.
    """
    p = Path(out).expanduser()
    if suffixes and p.suffix.lower() not in suffixes:
        names = ", ".join(f"*{x}" for x in suffixes[:-1]) + (" or " if len(suffixes) > 1 else "") + f"*{suffixes[-1]}"
        raise InputError(f"{what} {p}: unsupported file type {p.suffix or '(none)'!r}: name the file {names}")
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder: give a file name inside it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{what} {p}: folder {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} {p}: folder {parent} is not writable")
    for src in inputs:
        if src is not None and _same_file(p, Path(src).expanduser()):
            raise InputError(f"{what} {p} is also an input of this command ({src}): write to another file")
    for folder in folders:
        if folder is not None and _inside(p, Path(folder).expanduser()):
            raise InputError(f"{what} {p} is inside {folder}, which this command reads: write it elsewhere")
    for src in _bundled_weights():
        if _same_file(p, src):
            raise InputError(f"{what} {p} is the bundled weights file {src}: write to another file")
    if p.exists() or p.is_symlink():
        for cache in _model_caches():
            if _inside(p, cache):
                raise InputError(f"{what} {p} is in the model cache {cache}: write to another file")
    return p


def catalog_files(db: str | os.PathLike[str] | None) -> list[Path]:
    """The files of the catalog `db` names (a DuckDB file and its write-ahead log; none for
    PostgreSQL or a URL that cannot be read), for `check_output_path(inputs=...)`."""
    from catalog.connect import duckdb_path, resolve_url

    try:
        path = duckdb_path(resolve_url(db))
    except CircuitsError:
        return []
    return [] if path is None else [path, path.with_name(path.name + ".wal")]


def model_file(model: str) -> Path | None:
    """The Python file of a `path/to/file.py:factory` model name (an input), else None."""
    head = model.rpartition(":")[0] if ":" in model else model
    return Path(head) if head.endswith(".py") else None


def _bundled_weights() -> list[Path]:
    folder = Path(__file__).resolve().parents[2] / "ingest" / "weights"
    return sorted(folder.glob("*")) if folder.is_dir() else []


def _model_caches() -> list[Path]:
    home = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    torch_home = Path(os.environ.get("TORCH_HOME") or home / "torch").expanduser()
    hf = Path(os.environ.get("HF_HOME") or home / "huggingface").expanduser()
    return [torch_home / "hub", hf / "hub"]


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


@contextmanager
def new_catalog_guard(db: str | None) -> Iterator[None]:
    """Remove a DuckDB catalog this block created when the block fails before storing any run.

    `circuits ingest` creates a missing catalog before the model is loaded; a model that cannot be
    loaded must not leave an empty catalog file behind.
    """
    from catalog.connect import duckdb_path, resolve_url

    try:
        path = duckdb_path(resolve_url(db))
    except CircuitsError:
        path = None
    existed = path is None or path.exists()
    try:
        yield
    except BaseException:
        if not existed and path is not None and path.exists():
            _remove_if_empty(path)
        raise


def _remove_if_empty(path: Path) -> None:
    from catalog.engine import close_catalogs_of, open_catalog
    from catalog.sql import query_arrow

    try:
        cat = open_catalog(path)
        with cat.session() as s:
            runs = query_arrow(s, "SELECT count(*) AS n FROM run").column("n")[0].as_py()
        if runs:
            return
        close_catalogs_of(str(path))
        for p in (path, path.with_name(path.name + ".wal")):
            p.unlink(missing_ok=True)
    except Exception:  # cleanup is best effort: the original error is what the user needs
        pass
