"""Data functions for models (with their layers and neurons), concepts and example images.

Part of `catalog.store` (import from there); functions take a Session and never commit.
The upserts are safe when several processes write the same rows at once (PostgreSQL):
`INSERT … ON CONFLICT DO NOTHING` then a select, and a short lock (`catalog.locks`) around the
check-then-write steps that add rows under an existing model or concept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
from sqlalchemy import Table, select, text, update
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.orm import Session

from catalog import bulk
from catalog.errors import CatalogError, NotFound
from catalog.locks import Lock, lock
from catalog.models import Concept, ExampleImage, Layer, Model, Neuron, utcnow
from catalog.refs import LayerRef, ModelRef


def _table(cls: type[Model] | type[Concept]) -> Table:
    """A mapped class's Table (SQLAlchemy types a declarative class's `__table__` as a FromClause)."""
    return cast(Table, cls.__table__)


_LIST_MODELS = 'list them with `circuits sql "select id, name, weights_sha256 from model"`'


def ensure_model(
    session: Session,
    *,
    name: str,
    architecture: str,
    weights_sha256: str,
    layers: Sequence[tuple[str, int]],
) -> ModelRef:
    """Catalogue a model with its layers and neurons once per (name, weights_sha256).

    Calling again returns the stored model, adding any layers it does not have yet. Layer
    positions follow the order layers were first catalogued: pass the model's whole list of cut
    layers in forward order (not only one run's) so that positions are forward order. Layers first
    seen later are appended, because DuckDB cannot renumber rows that neurons reference.

    Args:
        session: the caller's session.
        name: model name (e.g. "googlenet").
        architecture: architecture/family string.
        weights_sha256: sha256 of the state dict.
        layers: (dotted layer name, channel count) in forward order.

    Returns:
        The model with every stored layer and its neuron ids.

    Raises:
        CatalogError: empty or repeated layer names, or a width differs from the stored one.
    """
    names = [n for n, _ in layers]
    if not names or len(set(names)) != len(names) or any(int(w) < 1 for _, w in layers):
        raise CatalogError(f"model {name}: layers must be distinct names with positive widths, got {list(layers)}")
    new_id = session.execute(
        upsert(_table(Model))
        .values(
            name=name, architecture=architecture, weights_sha256=weights_sha256, layer_order=names, created_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["name", "weights_sha256"])
        .returning(Model.__table__.c.id)
    ).scalar()
    if new_id is not None:  # this transaction created it: nobody else sees it until commit
        _add_layers(session, new_id, [(n, int(w)) for n, w in layers], first_position=0)
        return read_model(session, new_id)
    query = select(Model.id).where(Model.name == name, Model.weights_sha256 == weights_sha256)
    model_id = session.scalars(query).one()
    stored = read_model(session, model_id)
    if any(n not in stored.layer_order for n in names):
        lock(session, Lock.model_layers, model_id)  # then read again: another writer may have added them
        cached = session.get(Model, model_id)
        if cached is not None:
            session.expire(cached)
        stored = read_model(session, model_id)
    widths = {layer.name: layer.width for layer in stored.layers}
    for layer_name, width in layers:
        if layer_name in widths and widths[layer_name] != int(width):
            raise CatalogError(
                f"layer {layer_name} of model {name} has {widths[layer_name]} channels in the "
                f"catalog but {width} now, under the same weights sha256 {weights_sha256[:12]}: "
                "is it the same model?"
            )
    new = [(n, int(w)) for n, w in layers if n not in widths]
    if not new:
        return stored
    _add_layers(session, model_id, new, first_position=len(stored.layers))
    row = session.get(Model, model_id)
    assert row is not None, "read_model found this model above"
    row.layer_order = [*stored.layer_order, *(n for n, _ in new)]
    session.flush()
    return read_model(session, model_id)


def _add_layers(session: Session, model_id: int, layers: list[tuple[str, int]], first_position: int) -> None:
    rows = [Layer(model_id=model_id, name=n, position=first_position + i, width=w) for i, (n, w) in enumerate(layers)]
    session.add_all(rows)
    session.flush()
    widths = np.array([w for _, w in layers], dtype=np.int64)
    bulk.insert_columns(
        session,
        "neuron",
        {
            "id": bulk.allocate_ids(session, "neuron_id_seq", int(widths.sum())),
            "layer_id": np.repeat([r.id for r in rows], widths),
            "channel": np.concatenate([np.arange(w) for w in widths]),
        },
    )


def read_model(session: Session, model_id: int) -> ModelRef:
    """The model with this id, its layers (forward order) and neuron ids.

    Raises:
        NotFound: no such model.
    """
    row = session.get(Model, model_id)
    if row is None:
        raise NotFound(f"no model {model_id} in the catalog: {_LIST_MODELS}")
    layer_rows = session.scalars(select(Layer).where(Layer.model_id == model_id).order_by(Layer.position)).all()
    found = session.execute(
        select(Neuron.layer_id, Neuron.channel, Neuron.id)
        .join(Layer, Layer.id == Neuron.layer_id)
        .where(Layer.model_id == model_id)
    ).all()
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for layer_id, channel, neuron_id in found:
        by_layer.setdefault(layer_id, []).append((channel, neuron_id))
    layers = []
    for lr in layer_rows:
        pairs = np.array(sorted(by_layer.get(lr.id, [])), dtype=np.int64).reshape(-1, 2)
        if len(pairs) != lr.width or not np.array_equal(pairs[:, 0], np.arange(lr.width)):
            raise CatalogError(f"layer {lr.name} of model {row.name} lacks neurons: the catalog is damaged")
        layers.append(LayerRef(lr.id, lr.name, lr.position, lr.width, pairs[:, 1].copy()))
    return ModelRef(row.id, row.name, row.architecture, row.weights_sha256, tuple(row.layer_order), tuple(layers))


def find_model(session: Session, name: str, weights_sha256: str | None = None) -> ModelRef:
    """The model called `name` (and with these weights, if given).

    Raises:
        NotFound: none matches.
        CatalogError: several weights are catalogued under the name and none was given.
    """
    query = select(Model.id, Model.weights_sha256).where(Model.name == name)
    if weights_sha256 is not None:
        query = query.where(Model.weights_sha256 == weights_sha256)
    found = session.execute(query).all()
    if not found:
        which = " with those weights" if weights_sha256 else ""
        raise NotFound(f"no model {name!r}{which} in the catalog: {_LIST_MODELS}")
    if len(found) > 1:
        shas = ", ".join(sha[:12] for _, sha in found)
        raise CatalogError(f"model {name!r} has several weights in the catalog ({shas}): give the sha256")
    return read_model(session, found[0][0])


def ensure_concept(session: Session, name: str, description: str | None = None) -> int:
    """The id of the concept called `name`, created if missing.

    Args:
        session: the caller's session.
        name: concept name (unique).
        description: stored only when the concept is created.

    Returns:
        The concept id.
    """
    new_id = session.execute(
        upsert(_table(Concept))
        .values(name=name, description=description)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Concept.__table__.c.id)
    ).scalar()
    if new_id is not None:
        return new_id
    return session.scalars(select(Concept.id).where(Concept.name == name)).one()


def describe_concept(session: Session, name: str, description: str) -> int:
    """Set the description of an existing concept (shown by `circuits serve` and the report).

    Args:
        session: the caller's session.
        name: the concept's name.
        description: one line of text (empty clears it).

    Returns:
        The concept id.

    Raises:
        NotFound: no concept of that name.
        CatalogError: the text is longer than 2000 characters or spans several lines.
    """
    text = description.strip()
    if len(text) > 2000 or "\n" in text:
        raise CatalogError("a concept description is one line of at most 2000 characters")
    found = session.scalars(select(Concept.id).where(Concept.name == name)).one_or_none()
    if found is None:
        raise NotFound(f"no concept {name!r} in the catalog: list them with `circuits list concepts`")
    session.execute(update(Concept).where(Concept.id == found).values(description=text or None))
    return int(found)


def write_example_images(
    session: Session, concept_id: int, image_set_sha256: str, images: Sequence[tuple[str, str]]
) -> int:
    """Record a concept's example image set (idempotent per concept and set sha256).

    Args:
        session: the caller's session.
        concept_id: the concept.
        image_set_sha256: sha256 identifying the whole set.
        images: (image sha256, source path) in set order.

    Returns:
        The number of images recorded now (0 when the set was already stored).

    Raises:
        NotFound: no such concept.
        CatalogError: the set is stored with different images.
    """
    if session.get(Concept, concept_id) is None:
        raise NotFound(f"no concept {concept_id} in the catalog")
    lock(session, Lock.example_images, concept_id)  # another writer may record the same set now
    stored = session.scalars(
        select(ExampleImage.sha256)
        .where(ExampleImage.concept_id == concept_id)
        .where(ExampleImage.image_set_sha256 == image_set_sha256)
        .order_by(ExampleImage.position)
    ).all()
    if stored:
        if list(stored) != [sha for sha, _ in images]:
            raise CatalogError(f"image set {image_set_sha256[:12]} of concept {concept_id} is stored with other images")
        return 0
    session.add_all(
        ExampleImage(
            concept_id=concept_id,
            image_set_sha256=image_set_sha256,
            position=i,
            sha256=sha,
            source_path=str(src),
        )
        for i, (sha, src) in enumerate(images)
    )
    session.flush()
    return len(images)


def label_neurons(session: Session, model_id: int, layer: str, labels: Sequence[str | None]) -> int:
    """Set the labels of a layer's neurons by channel (e.g. class names on a logit layer).

    Returns:
        The number of neurons labelled.

    Raises:
        NotFound: the model has no such layer.
        CatalogError: not one label per channel.
    """
    row = session.scalars(select(Layer).where(Layer.model_id == model_id, Layer.name == layer)).first()
    if row is None:
        raise NotFound(f"model {model_id} has no layer {layer!r} in the catalog")
    if len(labels) != row.width:
        raise CatalogError(f"{len(labels)} labels for layer {layer} of width {row.width}: give one per channel")
    pairs = [{"lid": row.id, "ch": ch, "label": None if v is None else str(v)[:300]} for ch, v in enumerate(labels)]
    session.execute(text("UPDATE neuron SET label = :label WHERE layer_id = :lid AND channel = :ch"), pairs)
    return len(pairs)


def neuron_labels(session: Session, model_id: int, layer: str) -> dict[int, str]:
    """channel -> label of a layer's labelled neurons (empty when none is labelled)."""
    found = session.execute(
        select(Neuron.channel, Neuron.label)
        .join(Layer, Layer.id == Neuron.layer_id)
        .where(Layer.model_id == model_id, Layer.name == layer, Neuron.label.is_not(None))
    ).all()
    return {int(ch): str(label) for ch, label in found}
