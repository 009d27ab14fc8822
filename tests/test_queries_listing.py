"""Listings and reads of many circuits issue a fixed number of SQL statements (joins, not N+1),
and `fixed` / `objective` / `objective_history` read back with their documented types."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _helpers_catalog import write_circuit, write_run
from sqlalchemy import event

import queries.listing as listing
from catalog import store
from catalog.errors import CatalogError
from catalog.store import EvaluationRow


@pytest.fixture
def cat(any_cat):
    """Every test here runs on DuckDB and on PostgreSQL (see conftest `any_cat`)."""
    return any_cat


LAYERS = [("l0", 4), ("l1", 6), ("l2", 5)]
NAMES = [n for n, _ in LAYERS]
CONCEPTS = ["star", "wave", "dot"]


def _fill(cat, n_circuits: int) -> None:
    """One model, three concepts with a run each, `n_circuits` circuits round-robin over the runs,
    each with one intervention of two evaluations."""
    rng = np.random.default_rng(0)
    with cat.session() as s, s.begin():
        model = store.ensure_model(s, name="toy", architecture="cnn", weights_sha256="a" * 64, layers=LAYERS)
        runs = []
        for i, concept in enumerate(CONCEPTS):
            matrices = [rng.random((4, 6), dtype=np.float32), rng.random((6, 5), dtype=np.float32)]
            key = f"{i}" * 64
            runs.append(write_run(s, model, store.ensure_concept(s, concept), matrices, key, image_set_sha256=key))
        for j in range(n_circuits):
            channels = [[j % 4], [j % 6, (j + 1) % 6], [j % 5]]
            fixed = {"l0": [j % 4]} if j % 2 else None
            cid = write_circuit(s, runs[j % len(runs)], channels, fixed=fixed, history=[1.0, 2.0 + j])
            store.write_intervention(
                s,
                circuit_id=cid,
                kind="circuit",
                params={"seed": j},
                edge_fraction=0.1,
                baseline_edge_fraction=0.1,
                evaluations=[EvaluationRow("set", "e" * 64, 2, m, 1.0, 0.5, 0.9) for m in ("accuracy", "kl")],
            )


CALLS = {
    "list_models": lambda s: listing.list_models(s),
    "list_concepts": lambda s: listing.list_concepts(s, "toy"),
    "list_runs": lambda s: listing.list_runs(s),
    "list_circuits": lambda s: listing.list_circuits(s),
    "circuit_details": lambda s: listing.circuit_details(s, 1),
    "store.find_circuits": lambda s: store.find_circuits(s),
    "store.list_runs": lambda s: store.list_runs(s),
    "store.list_interventions": lambda s: store.list_interventions(s),
}


@pytest.fixture(scope="module")
def filled_catalogs(_catalog_template, tmp_path_factory):
    """Two DuckDB catalogs filled by `_fill`, with 3 and with 30 circuits (made once per module)."""
    from catalog.engine import close_catalogs_of, open_catalog

    paths = {}
    for n in (3, 30):
        path = tmp_path_factory.mktemp("listing") / f"n{n}.duckdb"
        shutil.copyfile(_catalog_template, path)
        _fill(open_catalog(path), n)
        close_catalogs_of(path)
        paths[n] = path
    return paths


@pytest.mark.parametrize("name", sorted(CALLS))
def test_statement_count_does_not_grow_with_the_catalog(filled_catalogs, monkeypatch, name):
    """Statements are counted through SQLAlchemy (event) and through `query_arrow`'s driver path."""
    from catalog.engine import close_catalogs_of, open_catalog

    counter = [0]

    def count(*_args, **_kwargs):
        counter[0] += 1

    original = listing.query_arrow

    def counted(*args, **kwargs):
        count()
        return original(*args, **kwargs)

    monkeypatch.setattr(listing, "query_arrow", counted)
    counts, sizes = [], []
    for _, path in sorted(filled_catalogs.items()):
        cat = open_catalog(path)
        event.listen(cat.engine, "before_cursor_execute", count)
        counter[0] = 0
        with cat.session() as s:
            result = CALLS[name](s)
        counts.append(counter[0])
        event.remove(cat.engine, "before_cursor_execute", count)
        sizes.append(len(result) if isinstance(result, list) else len(result.interventions))
        close_catalogs_of(path)
    assert counts[0] == counts[1] and counts[0] > 0, f"{name}: {counts} statements for {sizes}"
    if name in ("list_circuits", "store.find_circuits", "store.list_interventions"):
        assert sizes == [3, 30]


def test_listed_counts_match_the_rows(cat):
    _fill(cat, 7)
    with cat.session() as s:
        circuits = listing.list_circuits(s)
        runs = listing.list_runs(s)
        models = listing.list_models(s)
        concepts = listing.list_concepts(s)
    assert [c.neurons for c in circuits] == [4] * 7 and [c.interventions for c in circuits] == [1] * 7
    assert [c.layers for c in circuits] == [3] * 7
    assert [r.circuits for r in runs] == [3, 2, 2] and all(r.layers == 3 for r in runs)
    assert [(m.layers, m.runs, m.circuits) for m in models] == [(3, 3, 7)]
    assert {c.name: (c.runs, c.circuits) for c in concepts} == {"star": (1, 3), "wave": (1, 2), "dot": (1, 2)}


def test_fixed_objective_and_history_read_back_typed(cat):
    _fill(cat, 4)
    with cat.session() as s:
        refs = store.find_circuits(s)
        details = listing.circuit_details(s, refs[1].id)
        rows = listing.list_circuits(s)
    anchored = refs[1]
    assert anchored.fixed == {"l0": [1]} and refs[0].fixed is None
    assert details.circuit.fixed == {"l0": [1]}
    assert dict(zip(anchored.layer_names, anchored.channels))["l0"] == (1,)
    assert isinstance(anchored.objective, float) and anchored.objective == 3.0
    assert anchored.objective_history == (1.0, 3.0)
    assert all(isinstance(r.objective, float) for r in rows) and rows[1].objective == 3.0
    evaluations = details.interventions[0].evaluations
    assert [e.metric for e in evaluations] == ["accuracy", "kl"]


@pytest.mark.parametrize(
    ("fixed", "message"),
    [({"0": [1]}, "not a layer of the run"), ({"l0": [2]}, "the circuit has"), ({"l1": [1]}, "the circuit has")],
)
def test_fixed_must_name_run_layers_and_the_circuit_channels(cat, fixed, message):
    _fill(cat, 1)
    with cat.session() as s, s.begin():
        run_id = store.list_runs(s)[0].id
        with pytest.raises(CatalogError, match=message):
            store.write_circuit(
                s,
                run_id=run_id,
                channels=[[1], [1, 2], [0]],
                k=[1, 2, 1],
                fixed=fixed,
                sweeps=0,
                converged=True,
                objective_history=[1.0],
            )
