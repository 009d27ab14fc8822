"""Checks of command-line input that run before a command has any side effect.

Each function raises a one-line `CircuitsError` (converted by the root CLI) or returns the checked
value, so a refused command leaves no catalog row, file or folder behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from catalog.errors import CircuitsError

__all__ = ["InputError", "check_batch_size", "check_device", "check_output_path", "new_catalog_guard"]


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
    out: str | os.PathLike[str], *, suffixes: tuple[str, ...], inputs=(), what: str = "output"
) -> Path:
    """An output file path that can be written: known suffix, existing writable folder, not an input.

    Args:
        out: the path the command will write.
        suffixes: accepted suffixes, lower case with the dot (".json").
        inputs: paths the same command reads; writing over one of them is refused.
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
    return p


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        return False
    return a.resolve() == b.resolve()


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
