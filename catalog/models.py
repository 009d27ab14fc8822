"""The catalog schema as typed SQLAlchemy 2.0 models (docs/architecture.md, "Catalog schema").

Integer keys come from explicit sequences because DuckDB has no SERIAL. A run's scores are kept
whole in `run_matrix` (one losslessly compressed blob per adjacent layer pair, migration 0004);
`edge` holds only each pair's top edges and `circuit_edge` each circuit's internal edges, for SQL.
Those two row tables have no database-level primary key or foreign keys so bulk loads stay fast
(a mapper-level key lets the ORM address rows when it must); `catalog.bulk` is their only writer.
Foreign keys that point at rows a run deletion removes (run, circuit, intervention) exist on
PostgreSQL only (see `_pg_only_fk`). The tables are created by migrations 0001 and 0004
(`migrations/`); tests compare it with `metadata.create_all`. Timestamps are naive UTC.
Real numbers are DOUBLE (DuckDB's FLOAT is 4 bytes) except edge scores, REAL like the CLA scores.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    REAL,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from catalog.vocab import InterventionKind, RunStatus, check_in

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

RUN_STATUSES: tuple[str, ...] = tuple(RunStatus)
"""Every `run.status` value (from `catalog.vocab.RunStatus`)."""
INTERVENTION_KINDS: tuple[str, ...] = tuple(InterventionKind)
"""Every `intervention.kind` value (from `catalog.vocab.InterventionKind`)."""


def utcnow() -> dt.datetime:
    """The current time as naive UTC (how every timestamp in the catalog is stored)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _pg_only_fk(column: str, target: str) -> ForeignKeyConstraint:
    """A foreign key created on PostgreSQL only, for references whose parent rows get deleted.

    DuckDB (2.0) refuses to delete a referenced row in the same transaction that deletes the rows
    referencing it, so a run could not be deleted together with its circuits in one transaction.
    On DuckDB `catalog.store` checks these references itself (it is their only writer).
    """
    return ForeignKeyConstraint([column], [target]).ddl_if(dialect="postgresql")


class Base(DeclarativeBase):
    """Declarative base whose metadata names every constraint predictably (for migrations)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _id(seq: str) -> Mapped[int]:
    return mapped_column(Integer, Sequence(seq), primary_key=True)


class Model(Base):
    """A network plus the identity of its weights."""

    __tablename__ = "model"
    __table_args__ = (UniqueConstraint("name", "weights_sha256"),)

    id: Mapped[int] = _id("model_id_seq")
    name: Mapped[str] = mapped_column(String(200))
    architecture: Mapped[str] = mapped_column(String(200))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    # every catalogued layer by position: forward order when the model's layers were catalogued
    # together; a layer first seen later is appended (see catalog.store.ensure_model)
    layer_order: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Layer(Base):
    """A named module whose output is a cut of the network."""

    __tablename__ = "layer"
    __table_args__ = (UniqueConstraint("model_id", "name"), UniqueConstraint("model_id", "position"))

    id: Mapped[int] = _id("layer_id_seq")
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"))
    name: Mapped[str] = mapped_column(String(300))  # dotted module path, the hook site
    position: Mapped[int] = mapped_column(Integer)  # index in the model's layer_order
    width: Mapped[int] = mapped_column(Integer)  # number of channels (neurons)


class Neuron(Base):
    """One channel of a layer's output."""

    __tablename__ = "neuron"
    __table_args__ = (UniqueConstraint("layer_id", "channel"),)

    id: Mapped[int] = _id("neuron_id_seq")
    layer_id: Mapped[int] = mapped_column(ForeignKey("layer.id"))
    channel: Mapped[int] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(String(300), nullable=True)


class Concept(Base):
    """A named set of example images."""

    __tablename__ = "concept"

    id: Mapped[int] = _id("concept_id_seq")
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)


class ExampleImage(Base):
    """One example image of a concept, within one image set (identified by its sha256)."""

    __tablename__ = "example_image"
    __table_args__ = (UniqueConstraint("concept_id", "image_set_sha256", "position"),)

    id: Mapped[int] = _id("example_image_id_seq")
    concept_id: Mapped[int] = mapped_column(ForeignKey("concept.id"))
    image_set_sha256: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    source_path: Mapped[str] = mapped_column(Text)


class Run(Base):
    """One CLA computation with its provenance. Visible to readers only when status is complete."""

    __tablename__ = "run"
    __table_args__ = (
        Index(None, "provenance_key"),
        Index(None, "model_id", "concept_id"),
        CheckConstraint(check_in("status", RunStatus), name="status"),
    )

    id: Mapped[int] = _id("run_id_seq")
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id"))
    concept_id: Mapped[int] = mapped_column(ForeignKey("concept.id"))
    layer_names: Mapped[list[str]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    image_set_sha256: Mapped[str] = mapped_column(String(64))
    n_images: Mapped[int] = mapped_column(Integer)
    provenance_key: Mapped[str] = mapped_column(String(64))  # sha256 of weights+layers+images+params
    library_versions: Mapped[dict[str, str]] = mapped_column(JSON)
    device: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))  # a RunStatus
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Double, nullable=True)


class RunKey(Base):
    """The complete run that stands for a provenance key: one per key, enforced by the primary key.

    Writers claim the key in the transaction that writes the run (`catalog.store.write_run`), so
    of two processes computing the same run only one stores it; the other reuses it. Created by
    migration 0003, which fills it from existing complete runs (the newest per key).
    """

    __tablename__ = "run_key"
    __table_args__ = (_pg_only_fk("run_id", "run.id"),)

    provenance_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer)


class RunMatrix(Base):
    """One adjacent layer pair's full score matrix S_i of a run, losslessly compressed.

    Every score of the run is here (what circuit search and `refine` read); `edge` holds a subset.
    Written and decoded only by `catalog.bulk` (codec: `catalog.matrix_codec`). The blob is in
    `scores` on PostgreSQL and in `run_matrix_word` on DuckDB (`catalog.matrix_store` says why).
    """

    __tablename__ = "run_matrix"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pair: Mapped[int] = mapped_column(Integer, primary_key=True)  # i: run layer i → run layer i + 1
    src_layer_id: Mapped[int] = mapped_column(ForeignKey("layer.id"))
    dst_layer_id: Mapped[int] = mapped_column(ForeignKey("layer.id"))
    n_src: Mapped[int] = mapped_column(Integer)  # rows: source channels
    n_dst: Mapped[int] = mapped_column(Integer)  # columns: destination channels
    codec: Mapped[str] = mapped_column(String(40))  # catalog.matrix_codec.CODEC
    top_k: Mapped[int] = mapped_column(Integer)  # per-neuron K of this pair's rows in `edge`
    n_bytes: Mapped[int] = mapped_column(Integer)  # length of the blob
    scores: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # the blob (PostgreSQL)


# The blobs are zstd-compressed already: PostgreSQL's TOAST would spend time failing to compress
# them again (EXTERNAL = out of line, uncompressed).
event.listen(
    RunMatrix.__table__,
    "after_create",
    DDL("ALTER TABLE run_matrix ALTER COLUMN scores SET STORAGE EXTERNAL").execute_if(dialect="postgresql"),
)


class RunMatrixWord(Base):
    """On DuckDB, a `run_matrix` blob as rows of little-endian 8-byte words (`catalog.matrix_store`)."""

    __tablename__ = "run_matrix_word"

    run_id: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)  # word index within the run's blobs, in pair order
    word: Mapped[int] = mapped_column(BigInteger)

    __mapper_args__ = {"primary_key": [run_id, seq]}


class Edge(Base):
    """One of a run's top edges (`catalog.edge_select`): the rows `edges_v` shows. Bulk-written only."""

    __tablename__ = "edge"
    # PostgreSQL needs the index to find one run's rows; DuckDB finds them through its per-row-group
    # min/max statistics (runs are written contiguously) and an ART index would slow bulk loads.
    # On PostgreSQL a block-range (BRIN) index, for the same reason: a run's rows fill consecutive
    # pages, and a B-tree took ~0.23 MB a run (migration 0006).
    __table_args__ = (
        Index(None, "run_id", postgresql_using="brin", postgresql_with={"autosummarize": "on"}).ddl_if(
            dialect="postgresql"
        ),
    )

    run_id: Mapped[int] = mapped_column(Integer)
    src_neuron_id: Mapped[int] = mapped_column(Integer)
    dst_neuron_id: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(REAL)

    __mapper_args__ = {"primary_key": [run_id, src_neuron_id, dst_neuron_id]}


class CircuitEdge(Base):
    """An internal edge of a circuit (both ends in it) with its run's score. Bulk-written only.

    Every internal pair is stored, zero scores included, so a circuit's graph and the weighted
    overlap need no run matrix. `run_id` lets a run's deletion find the rows after its circuits
    are gone (`catalog.bulk.delete_edges`).
    """

    __tablename__ = "circuit_edge"
    __table_args__ = (Index(None, "circuit_id").ddl_if(dialect="postgresql"),)

    circuit_id: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int] = mapped_column(Integer)
    src_neuron_id: Mapped[int] = mapped_column(Integer)
    dst_neuron_id: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(REAL)

    __mapper_args__ = {"primary_key": [circuit_id, src_neuron_id, dst_neuron_id]}


class Circuit(Base):
    """k neurons per layer chosen from a run's scores (docs/method.md, "Circuit search")."""

    __tablename__ = "circuit"
    __table_args__ = (Index(None, "run_id"), _pg_only_fk("run_id", "run.id"))

    id: Mapped[int] = _id("circuit_id_seq")
    run_id: Mapped[int] = mapped_column(Integer)
    k: Mapped[list[int]] = mapped_column(JSON)  # one k per layer of the run
    fixed: Mapped[dict[str, list[int]] | None] = mapped_column(JSON, nullable=True)
    sweeps: Mapped[int] = mapped_column(Integer)
    converged: Mapped[bool] = mapped_column(Boolean)
    objective: Mapped[float] = mapped_column(Double)  # final value
    objective_history: Mapped[list[float]] = mapped_column(JSON)  # initial, then after each sweep
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CircuitNeuron(Base):
    """Membership of one neuron in one circuit."""

    __tablename__ = "circuit_neuron"
    __table_args__ = (_pg_only_fk("circuit_id", "circuit.id"),)

    circuit_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    neuron_id: Mapped[int] = mapped_column(ForeignKey("neuron.id"), primary_key=True)


class Intervention(Base):
    """Edge or circuit pruning of a circuit (docs/method.md, "Interventions")."""

    __tablename__ = "intervention"
    __table_args__ = (
        Index(None, "circuit_id"),
        CheckConstraint(check_in("kind", InterventionKind), name="kind"),
        _pg_only_fk("circuit_id", "circuit.id"),
    )

    id: Mapped[int] = _id("intervention_id_seq")
    circuit_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # an InterventionKind
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # edge layer index, baseline seed, ...
    edge_fraction: Mapped[float] = mapped_column(Double)  # fraction of adjacent-layer edges cut
    baseline_edge_fraction: Mapped[float | None] = mapped_column(Double, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Evaluation(Base):
    """One metric of an intervention on one image set, beside its random-baseline value."""

    __tablename__ = "evaluation"
    __table_args__ = (Index(None, "intervention_id"), _pg_only_fk("intervention_id", "intervention.id"))

    id: Mapped[int] = _id("evaluation_id_seq")
    intervention_id: Mapped[int] = mapped_column(Integer)
    image_set: Mapped[str] = mapped_column(String(300))  # e.g. "catfish:star_wave" or a folder
    image_set_sha256: Mapped[str] = mapped_column(String(64))
    n_images: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(50))  # a catalog.vocab.Metric
    clean_value: Mapped[float | None] = mapped_column(Double, nullable=True)
    value: Mapped[float] = mapped_column(Double)
    baseline_value: Mapped[float | None] = mapped_column(Double, nullable=True)


# ---------------------------------------------------------------- thumbnails (catalog.media reads
# and writes them; migration 0002 creates them)


class _PatchColumns:
    """The columns of `neuron_patch` and `neuron_reference_patch` (migrations 0002 and 0005 create
    both with these columns, in this order)."""

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    neuron_id: Mapped[int] = mapped_column(ForeignKey("neuron.id"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    # of the run's concept; for a reference patch, of concept `reference:MODEL`
    example_image_id: Mapped[int] = mapped_column(ForeignKey("example_image.id"))
    activation: Mapped[float] = mapped_column(Double)  # the neuron's max over positions, this image
    # crop box in the model-input pixels of the image: x0, y0, x1, y1 (x1/y1 exclusive)
    x0: Mapped[int] = mapped_column(Integer)
    y0: Mapped[int] = mapped_column(Integer)
    x1: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    mime: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # the whole example image with the neuron's activation map over it (where it fires), PNG;
    # migration 0005 (nullable: patches stored before have none)
    heatmap: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class NeuronPatch(_PatchColumns, Base):
    """One top-activating example patch of a circuit neuron within a run (rank 0 = strongest)."""

    __tablename__ = "neuron_patch"
    # PostgreSQL only, as for circuits (see catalog.models._pg_only_fk); cascading, so that
    # `catalog.store.delete_run` needs no change there. On DuckDB a deleted run's patches stay
    # behind, unread (readers join complete runs), until `delete_run_patches` removes them.
    __table_args__ = (ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE").ddl_if(dialect="postgresql"),)


class NeuronReferencePatch(_PatchColumns, Base):
    """A circuit neuron's top patch from its model's reference image set (not the concept's), so
    the neurons of one circuit are told apart; the same columns as `neuron_patch`, migration 0005."""

    __tablename__ = "neuron_reference_patch"
    __table_args__ = (ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE").ddl_if(dialect="postgresql"),)


class NeuronFeatureVis(Base):
    """A circuit neuron's feature visualisation within a run (`ingest.featurevis`), migration 0005."""

    __tablename__ = "neuron_featurevis"
    __table_args__ = (ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE").ddl_if(dialect="postgresql"),)

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    neuron_id: Mapped[int] = mapped_column(ForeignKey("neuron.id"), primary_key=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    activation: Mapped[float] = mapped_column(Double)  # the unit's mean activation on its picture
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # size, steps, lr, seed, recipe, weights sha256
    mime: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ImageThumbnail(Base):
    """A small PNG of one concept example image."""

    __tablename__ = "image_thumbnail"

    example_image_id: Mapped[int] = mapped_column(ForeignKey("example_image.id"), primary_key=True)
    width: Mapped[int] = mapped_column(Integer)  # the original image's size
    height: Mapped[int] = mapped_column(Integer)
    mime: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)
