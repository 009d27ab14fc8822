"""Job files of `circuits ingest-many`: a YAML list of model × concept × k ingests.

    - model: catfish-mini
      concept: stripes
      dataset: catfish:stripes   # or images: path/to/folder
      k: 3                       # one k, or one per layer: [3, 4, 3]
      layers: [features.1, features.4]   # optional: the model's default CLA layers
      weights: path/to/weights.pt        # optional
      n: 32                      # images rendered for a dataset (default 32)
      seed: 0                    # their seed (default 0)

Relative `images`, `weights` and `path/file.py:factory` models are relative to the job file.

YAML anchors and aliases (`<<: *defaults`) work, but a file is refused when its aliases would
expand to more than `MAX_NODES` values (a "billion laughs" file is a few hundred bytes) or when it
is larger than `MAX_FILE_BYTES`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from catalog.errors import CircuitsError
from catalog.sizes import BadK, parse_k

__all__ = ["MAX_FILE_BYTES", "MAX_NODES", "Job", "JobFileError", "load_jobs"]

MAX_NODES = 100_000  # values after alias expansion: thousands of jobs, never a bomb
MAX_FILE_BYTES = 10 << 20


class JobFileError(CircuitsError):
    """A job file that cannot be read as a list of ingest jobs."""


@dataclass(frozen=True)
class Job:
    """One ingest: what `circuits ingest` takes, as data (picklable, shipped to workers)."""

    model: str
    concept: str
    k: int | tuple[int, ...] = 5
    images: str | None = None
    dataset: str | None = None
    layers: tuple[str, ...] | None = None
    weights: str | None = None
    n: int = 32
    seed: int = 0
    device: str = "auto"
    batch_size: int = 16

    @property
    def label(self) -> str:
        """A short name for progress and reports, e.g. "catfish-mini × stripes × k=3"."""
        k = self.k if isinstance(self.k, int) else ",".join(map(str, self.k))
        return f"{Path(self.model).name if ':' in self.model else self.model} × {self.concept} × k={k}"


_KEYS = {f.name for f in fields(Job)}
_REQUIRED = ("model", "concept")


def load_jobs(path: str | os.PathLike[str]) -> list[Job]:
    """Read a job file.

    Args:
        path: a YAML file holding a list of jobs (or a mapping with a `jobs` list).

    Returns:
        The jobs in file order.

    Raises:
        JobFileError: unreadable YAML, or a job with a missing, unknown or ill-typed field.
    """
    import yaml

    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_FILE_BYTES:
            raise JobFileError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MiB: a job file is a short YAML list")
        data = _safe_load_bounded(path.read_text(), path)
    except FileNotFoundError:
        raise JobFileError(f"no job file {path}: write a YAML list of {{model, concept, dataset|images, k}}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise JobFileError(f"{path} is not valid YAML{line}: fix it (a list of jobs)") from None
    if isinstance(data, dict) and "jobs" in data:
        data = data["jobs"]
    if not isinstance(data, list) or not data:
        raise JobFileError(f"{path} holds no jobs: write a YAML list of {{model, concept, dataset|images, k}}")
    return [_job(entry, i + 1, path) for i, entry in enumerate(data)]


def _safe_load_bounded(text: str, path: Path) -> Any:
    """`yaml.safe_load`, refusing a document whose aliases expand to more than `MAX_NODES` values.

    The node graph is composed first (aliases share nodes, so this is cheap) and its expanded
    size counted with one memo per node, before any Python object is built.
    """
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        memo: dict[int, int] = {}

        def size(n: Any, depth: int = 0) -> int:
            if id(n) in memo:
                return memo[id(n)]
            if depth > 200:  # deeper than any job file: count it as too big
                return MAX_NODES + 1
            memo[id(n)] = MAX_NODES + 1  # a cycle (a recursive alias) is too big too
            if isinstance(n, yaml.SequenceNode):
                total = 1 + sum(size(c, depth + 1) for c in n.value)
            elif isinstance(n, yaml.MappingNode):
                total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
            else:
                total = 1
            memo[id(n)] = total = min(total, MAX_NODES + 1)
            return total

        if size(node) > MAX_NODES:
            raise JobFileError(
                f"{path}: its YAML aliases expand to more than {MAX_NODES:,} values (an alias bomb?): "
                "write the jobs out, or use fewer nested aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _job(entry: Any, number: int, path: Path) -> Job:
    where = f"{path}: job {number}"
    if not isinstance(entry, dict):
        raise JobFileError(f"{where} is not a mapping: give model, concept, dataset|images and k")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise JobFileError(f"{where} has unknown field(s) {', '.join(unknown)}: use {', '.join(sorted(_KEYS))}")
    missing = [key for key in _REQUIRED if not entry.get(key)]
    if missing:
        raise JobFileError(f"{where} lacks {', '.join(missing)}")
    if (entry.get("images") is None) == (entry.get("dataset") is None):
        raise JobFileError(f"{where} needs exactly one of images: DIR or dataset: catfish:NAME")
    values = dict(entry)

    values["model"], values["concept"] = str(values["model"]), str(values["concept"])
    try:
        values["k"] = parse_k(values.get("k", 5))
        if values.get("layers") is not None:
            layers = values["layers"]
            layers = layers.split(",") if isinstance(layers, str) else list(layers)
            values["layers"] = tuple(str(x).strip() for x in layers if str(x).strip())
        for key in ("n", "seed", "batch_size"):
            if key in values:
                values[key] = int(values[key])
    except (TypeError, ValueError, BadK) as exc:  # a parameter here is a field: `k=` reads as k
        raise JobFileError(f"{where}: {str(exc).replace('`k=`', 'k')}") from None
    base = path.resolve().parent
    if values.get("images") is not None:
        values["images"] = str(base / Path(str(values["images"])).expanduser())
    if values.get("weights") is not None:
        values["weights"] = str(base / Path(str(values["weights"])).expanduser())
    file, sep, factory = values["model"].rpartition(":")
    if sep and file.endswith(".py"):
        values["model"] = f"{base / Path(file).expanduser()}:{factory}"
    return Job(**values)
