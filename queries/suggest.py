"""Complete commands to suggest: the model and weights options a stored run needs to be rebuilt.

The commands the tool prints (`prune-plan`'s `circuits ablate …`, `export`'s `circuits apply …`,
`show`'s next step) must run when copied. A run records where its weights came from
(`library_versions["weights_source"]`: ``file:/abs/path``, ``bundled:…``, ``cache:…`` or
``random-init``); a local file becomes ``--weights PATH``. A user model's stored factory string
becomes ``--model SPEC`` for `ablate` — shown for the user to copy, never imported by the tool
(`ingest.stored_model`). Catalogs from before weights sources were recorded get ``--weights
FILE`` with the weights' sha256 prefix, so the gap is visible rather than silently wrong.
"""

from __future__ import annotations

import shlex

from sqlalchemy.orm import Session

from catalog.image_set_names import parse_image_set_name
from catalog.sql import decode_json, query_arrow

__all__ = [
    "ablate_model_flags",
    "ablate_next_step",
    "apply_command",
    "db_flag",
    "images_for_run",
    "run_model_flags",
    "thumbnails_command",
    "weights_warning",
]

RANDOM_INIT = "random-init"


def db_flag(db: str | None) -> str:
    """`` --db PATH`` (quoted) when the catalog is not the default one, else ''."""
    return f" --db {shlex.quote(str(db))}" if db else ""


def weights_warning(library_versions: dict | str | None) -> str | None:
    """A warning when a run's weights were recorded as random-init (untrained), else None."""
    lib = decode_json(library_versions) if isinstance(library_versions, str) else (library_versions or {})
    if str(lib.get("weights_source", "")) == RANDOM_INIT:
        return (
            "RANDOM-INIT weights: this run used an untrained network (no weights given or found), "
            "so its circuits say little about a trained model"
        )
    return None


def thumbnails_command(session: Session, run_id: int, db: str | None = None) -> str:
    """`circuits thumbnails RUN MODEL [--weights PATH] [--db PATH]` for a run's neuron patches."""
    model, weights = run_model_flags(session, run_id)
    return f"circuits thumbnails {run_id} {shlex.quote(model)}{weights}{db_flag(db)}"


def ablate_next_step(session: Session, circuit_id: int, run_id: int, db: str | None = None) -> str:
    """The complete `circuits ablate` command for a circuit on its run's own images."""
    return (
        f"circuits ablate {circuit_id} --kind circuit {images_for_run(session, run_id)}"
        f"{ablate_model_flags(session, run_id)}{db_flag(db)}"
    )


def _run_row(session: Session, run_id: int) -> dict:
    table = query_arrow(
        session,
        "SELECT m.name AS model, m.weights_sha256 AS sha, r.library_versions AS lib, r.concept_id AS concept_id, "
        "r.image_set_sha256 AS image_set FROM run r JOIN model m ON m.id = r.model_id WHERE r.id = :r",
        {"r": run_id},
    )
    return table.to_pylist()[0]


def _is_user_model(name: str) -> bool:
    return ":" in name


def weights_flag(row: dict) -> str:
    """``--weights PATH`` when the run's weights came from a local file (or may have), else ''."""
    lib = decode_json(row["lib"]) or {}
    source = str(lib.get("weights_source", ""))
    if source.startswith("file:"):
        return f" --weights {shlex.quote(source[5:])}"
    if source:  # bundled, cache or random-init: the model rebuilds them alone
        return ""
    if _is_user_model(row["model"]):
        return f" --weights FILE  # the weights with sha256 {row['sha'][:12]}… (not recorded by older versions)"
    return ""


def run_model_flags(session: Session, run_id: int) -> tuple[str, str]:
    """(model name, weights flag) of a run, for commands that rebuild its model."""
    row = _run_row(session, run_id)
    return row["model"], weights_flag(row)


def ablate_model_flags(session: Session, run_id: int) -> str:
    """The options `circuits ablate` needs for a circuit of this run: --model for user models, --weights."""
    model, weights = run_model_flags(session, run_id)
    model_flag = f" --model {shlex.quote(model)}" if _is_user_model(model) else ""
    return model_flag + weights


def apply_command(session: Session, run_id: int, mask_path: str, out: str = "pruned.pt") -> str:
    """`circuits apply MODEL --mask PATH -o OUT [--weights PATH]` for a mask of this run's circuit."""
    model, weights = run_model_flags(session, run_id)
    return f"circuits apply {shlex.quote(model)} --mask {shlex.quote(mask_path)} -o {out}{weights}"


def images_for_run(session: Session, run_id: int) -> str:
    """How to name a run's own images on the command line: ``--dataset catfish:NAME`` for rendered
    sets, ``--images DIR`` for a folder (from the catalogued example images)."""
    import os

    row = _run_row(session, run_id)
    sources = (
        query_arrow(
            session,
            "SELECT source_path AS source FROM example_image WHERE concept_id = :c AND image_set_sha256 = :s ORDER BY position",
            {"c": row["concept_id"], "s": row["image_set"]},
        )
        .column("source")
        .to_pylist()
    )
    rendered = [parse_image_set_name(s) for s in sources if s and s.startswith("catfish:")]
    if rendered:
        return f"--dataset catfish:{rendered[0].name}"
    photos = [s for s in sources if s and s.startswith("photo:")]
    if photos:  # the walkthrough's photographs, rendered again from their name
        return f"--dataset photo:{photos[0].split(':', 1)[1].split('#', 1)[0]}"
    files = [s for s in sources if s and ("/" in s or os.sep in s)]
    if files:
        return f"--images {shlex.quote(os.path.commonpath([os.path.dirname(f) for f in files]))}"
    return "--images DIR"
