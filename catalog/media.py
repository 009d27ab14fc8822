"""Thumbnails kept in the catalog, so a shared catalog file is self-contained for viewing.

Two tables, created by migration 0002:

- `neuron_patch`: for a run and one of its circuit neurons, the top-activating example images of
  the run's concept set, cropped to the neuron's receptive field around its strongest position,
  as small images (rank 0 = strongest). Written by `ingest.thumbnails` in the run's transaction,
  or later by `circuits thumbnails RUN`.
- `image_thumbnail`: one small image per example image of a concept.

Images are WebP (what `ingest.thumbnails` writes: a 64 px patch is ~1–1.5 kB, against 7–10 kB as a
PNG, which made patches a large part of a googlenet run's catalog growth; see docs/results.md,
"Catalog scale and storage"), PNG (catalogs written before) or JPEG; the `mime` column says which,
from the bytes' signature. Both tables are bounded: `MAX_IMAGE_BYTES` per image (the writer shrinks until it fits),
and the ingest side keeps a handful of patches per neuron. Data functions take the caller's Session and never commit
(docs/architecture.md, "Conventions"); they return plain dataclasses (docs/architecture.md, "Conventions"). The rows are small (kilobytes), so they go
through Core `executemany`, not the ORM and not the bulk edge path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from catalog.errors import CatalogError, NotFound

# The two tables are declared in catalog.models with the rest of the schema (so Base.metadata has
# them wherever the schema is used, without models importing this module back).
from catalog.models import (  # noqa: F401 (Base: callers' metadata)
    Base,
    ExampleImage,
    ImageThumbnail,
    Layer,
    Neuron,
    NeuronPatch,
    NeuronReferencePatch,
    Run,
)

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_PNG_BYTES",
    "ImageThumbnail",
    "NeuronPatch",
    "NeuronReferencePatch",
    "PatchRow",
    "ThumbRow",
    "delete_run_patches",
    "example_image_ids",
    "image_mime",
    "image_set_sources",
    "image_set_thumbnails",
    "image_thumbnail_png",
    "neuron_id_map",
    "patch_heatmap_png",
    "patch_png",
    "read_patches",
    "write_image_thumbnails",
    "write_patches",
]

MAX_IMAGE_BYTES = 24_000
"""Largest image the catalog accepts (a 64 px RGB thumbnail is 0.5–2 kB as WebP, 3–12 kB as PNG)."""
MAX_PNG_BYTES = MAX_IMAGE_BYTES
"""The same limit under its former name."""

_SIGNATURES = (  # (mime, test on the first bytes)
    ("image/png", lambda b: b.startswith(b"\x89PNG\r\n\x1a\n")),
    ("image/webp", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
    ("image/jpeg", lambda b: b.startswith(b"\xff\xd8\xff")),
)


@dataclass(frozen=True)
class PatchRow:
    """One stored patch (without or with its PNG bytes)."""

    run_id: int
    neuron_id: int
    rank: int
    example_image_id: int
    activation: float
    box: tuple[int, int, int, int]
    png: bytes | None = None  # the image's bytes (WebP, PNG or JPEG: `image_mime` says which)
    heatmap: bytes | None = None  # the whole image with the activation map over it (with_png)
    has_heatmap: bool = False


# A patch's columns as PatchRow holds them, its box (x0, y0, x1, y1) last; then come the images.
_PATCH_COLUMNS = ("run_id", "neuron_id", "rank", "example_image_id", "activation", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class ThumbRow:
    """One example image of a set with its thumbnail's presence."""

    example_image_id: int
    position: int
    sha256: str
    source_path: str
    has_thumbnail: bool


def image_mime(data: bytes) -> str | None:
    """The MIME type of a PNG, WebP or JPEG image from its signature (None: none of these)."""
    head = bytes(data[:12])
    return next((mime for mime, test in _SIGNATURES if test(head)), None)


def _check_image(data: bytes, what: str) -> str:
    """The image's MIME type; raises CatalogError unless it is a PNG/WebP/JPEG within the limit."""
    mime = image_mime(data)
    if mime is None:
        raise CatalogError(f"{what} is not a PNG, WebP or JPEG image")
    if len(data) > MAX_IMAGE_BYTES:
        raise CatalogError(f"{what} is {len(data)} bytes, over the {MAX_IMAGE_BYTES}-byte limit: shrink it")
    return mime


def write_patches(
    session: Session, run_id: int, patches: Iterable[PatchRow], *, replace: bool = True, reference: bool = False
) -> int:
    """Store a run's neuron patches (replacing the run's old ones when `replace`).

    Args:
        session: the caller's session (its transaction; e.g. the run's own).
        run_id: the run (it may still be uncommitted in this transaction).
        patches: rows with `png` set (image bytes); their `run_id` is ignored.
        replace: delete the run's previous patches first (recomputation).
        reference: patches from the model's reference set (`neuron_reference_patch`), not the concept's.

    Returns:
        The number of rows written.

    Raises:
        CatalogError: a patch is not a PNG/WebP/JPEG image or is too large.
    """
    rows = []
    for p in patches:
        assert p.png is not None, "write_patches needs the image bytes"
        mime = _check_image(p.png, f"patch of neuron {p.neuron_id} rank {p.rank}")
        if p.heatmap is not None:
            _check_image(p.heatmap, f"heat-map of neuron {p.neuron_id} rank {p.rank}")
        values = (int(run_id), int(p.neuron_id), int(p.rank), int(p.example_image_id), float(p.activation))
        box = (int(v) for v in p.box)
        rows.append(dict(zip(_PATCH_COLUMNS, (*values, *box)), mime=mime, data=p.png, heatmap=p.heatmap))
    if replace:
        delete_run_patches(session, run_id, reference=reference)
    if rows:
        session.execute(insert(_table(reference)), rows)
    return len(rows)


def _table(reference: bool) -> type[NeuronPatch] | type[NeuronReferencePatch]:
    return NeuronReferencePatch if reference else NeuronPatch


def delete_run_patches(session: Session, run_id: int, *, reference: bool = False) -> None:
    """Delete every patch of a run (call beside `catalog.store.delete_run`)."""
    t = _table(reference)
    session.execute(delete(t).where(t.run_id == int(run_id)))


def write_image_thumbnails(session: Session, thumbs: Iterable[tuple[int, int, int, bytes]]) -> int:
    """Store example-image thumbnails (example_image_id, width, height, image bytes); existing ones are kept.

    Returns:
        The number of thumbnails written now.

    Raises:
        CatalogError: a thumbnail is not a PNG/WebP/JPEG image or is too large.
    """
    items = list(thumbs)
    if not items:
        return 0
    have = set(
        session.scalars(
            select(ImageThumbnail.example_image_id).where(
                ImageThumbnail.example_image_id.in_([int(i) for i, *_ in items])
            )
        ).all()
    )
    rows = []
    for image_id, width, height, png in items:
        if int(image_id) in have:
            continue
        mime = _check_image(png, f"thumbnail of example image {image_id}")
        have.add(int(image_id))
        rows.append(dict(example_image_id=int(image_id), width=int(width), height=int(height), mime=mime, data=png))
    if rows:
        session.execute(insert(ImageThumbnail), rows)
    return len(rows)


def example_image_ids(session: Session, concept_id: int, image_set_sha256: str) -> list[int]:
    """The ids of an image set's example images, in set order.

    Raises:
        NotFound: the concept has no such image set.
    """
    ids = session.scalars(
        select(ExampleImage.id)
        .where(ExampleImage.concept_id == int(concept_id), ExampleImage.image_set_sha256 == image_set_sha256)
        .order_by(ExampleImage.position)
    ).all()
    if not ids:
        raise NotFound(f"concept {concept_id} has no image set {image_set_sha256[:12]} in the catalog")
    return [int(i) for i in ids]


def image_set_sources(session: Session, concept_id: int, image_set_sha256: str) -> list[tuple[str, str]]:
    """(source path, sha256) of an image set's example images, in set order.

    Raises:
        NotFound: the concept has no such image set.
    """
    rows = session.execute(
        select(ExampleImage.source_path, ExampleImage.sha256)
        .where(ExampleImage.concept_id == int(concept_id), ExampleImage.image_set_sha256 == image_set_sha256)
        .order_by(ExampleImage.position)
    ).all()
    if not rows:
        raise NotFound(f"concept {concept_id} has no image set {image_set_sha256[:12]} in the catalog")
    return [(r[0], r[1]) for r in rows]


def neuron_id_map(session: Session, model_id: int, layer_names: Sequence[str]) -> dict[tuple[str, int], int]:
    """{(layer name, channel): neuron id} for the given layers of a model."""
    q = (
        select(Layer.name, Neuron.channel, Neuron.id)
        .join(Neuron, Neuron.layer_id == Layer.id)
        .where(Layer.model_id == int(model_id), Layer.name.in_(list(layer_names)))
    )
    return {(r[0], int(r[1])): int(r[2]) for r in session.execute(q)}


def read_patches(
    session: Session,
    run_id: int | None = None,
    neuron_ids: Sequence[int] | None = None,
    *,
    with_png: bool = False,
    reference: bool = False,
) -> dict[tuple[int, int], list[PatchRow]]:
    """Stored patches of complete runs, grouped by (run_id, neuron_id), strongest first.

    Args:
        session: the caller's session.
        run_id: only this run (None: every complete run).
        neuron_ids: only these neurons (None: all).
        with_png: include the image bytes.
        reference: patches from the model's reference set instead of the run's concept.

    Returns:
        {(run_id, neuron_id): [PatchRow, …]} ordered by rank.
    """
    T = _table(reference)
    cols: list[Any] = [*(getattr(T, c) for c in _PATCH_COLUMNS), T.heatmap.is_not(None)]  # and has a heat-map
    if with_png:
        cols += [T.data, T.heatmap]
    q = select(*cols).join(Run, Run.id == T.run_id).where(Run.status == "complete")
    if run_id is not None:
        q = q.where(T.run_id == int(run_id))
    if neuron_ids is not None:
        q = q.where(T.neuron_id.in_([int(n) for n in neuron_ids]))
    out: dict[tuple[int, int], list[PatchRow]] = {}
    for row in session.execute(q.order_by(T.run_id, T.neuron_id, T.rank)):
        png = bytes(row[10]) if with_png else None
        heat = bytes(row[11]) if with_png and row[11] is not None else None
        box = (row[5], row[6], row[7], row[8])
        out.setdefault((row[0], row[1]), []).append(
            PatchRow(row[0], row[1], row[2], row[3], float(row[4]), box, png, heat, bool(row[9]))
        )
    return out


def patch_png(session: Session, run_id: int, neuron_id: int, rank: int, *, reference: bool = False) -> bytes:
    """One patch's image bytes (`image_mime` gives their type).

    Raises:
        NotFound: no such patch.
    """
    T = _table(reference)
    data = session.scalar(
        select(T.data).where(T.run_id == int(run_id), T.neuron_id == int(neuron_id), T.rank == int(rank))
    )
    if data is None:
        raise NotFound(
            f"no patch {rank} of neuron {neuron_id} in run {run_id}: compute them with `circuits thumbnails {run_id}`"
        )
    return bytes(data)


def patch_heatmap_png(session: Session, run_id: int, neuron_id: int, rank: int, *, reference: bool = False) -> bytes:
    """One patch's heat-map PNG (the example image with the neuron's activation over it).

    Raises:
        NotFound: no such patch, or it has no heat-map (stored before schema 0005).
    """
    T = _table(reference)
    data = session.scalar(
        select(T.heatmap).where(T.run_id == int(run_id), T.neuron_id == int(neuron_id), T.rank == int(rank))
    )
    if data is None:
        raise NotFound(f"no heat-map for run {run_id}, neuron {neuron_id}, rank {rank}")
    return bytes(data)


def image_thumbnail_png(session: Session, example_image_id: int) -> bytes:
    """One example image's thumbnail bytes (`image_mime` gives their type).

    Raises:
        NotFound: no thumbnail for that image.
    """
    data = session.scalar(select(ImageThumbnail.data).where(ImageThumbnail.example_image_id == int(example_image_id)))
    if data is None:
        raise NotFound(f"no thumbnail of example image {example_image_id} in the catalog")
    return bytes(data)


def image_set_thumbnails(session: Session, image_set_sha256: str) -> list[ThumbRow]:
    """An image set's example images (first concept that has it) with whether each has a thumbnail.

    Raises:
        NotFound: no such image set.
    """
    concept = session.scalar(
        select(ExampleImage.concept_id)
        .where(ExampleImage.image_set_sha256 == image_set_sha256)
        .order_by(ExampleImage.concept_id)
        .limit(1)
    )
    if concept is None:
        raise NotFound(f"no image set {image_set_sha256[:12]} in the catalog")
    q = (
        select(
            ExampleImage.id,
            ExampleImage.position,
            ExampleImage.sha256,
            ExampleImage.source_path,
            ImageThumbnail.example_image_id,
        )
        .outerjoin(ImageThumbnail, ImageThumbnail.example_image_id == ExampleImage.id)
        .where(ExampleImage.image_set_sha256 == image_set_sha256, ExampleImage.concept_id == concept)
        .order_by(ExampleImage.position)
    )
    return [ThumbRow(int(r[0]), int(r[1]), r[2], r[3], r[4] is not None) for r in session.execute(q)]
