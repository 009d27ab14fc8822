"""`circuits defend` on typo-mini: attack metrics, the sweep, storage, recommendation, prune-plan,
export + apply to a defended weights file, and bad input."""

from __future__ import annotations

import functools
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from catalog import store
from catalog.engine import close_catalogs_of, open_catalog
from circuits.cli.main import app
from ingest import zoo
from ingest.ablation import ablate
from ingest.datasets.catfish import CLASS_NAMES
from ingest.datasets.typo_sets import AttackLabelsMissing, typo_image_set
from ingest.defence.attack_eval import attack_metrics, predict
from ingest.defence.defend import DefenceRow, DefendConfig, DefendError, defend, recommend, typo_target
from ingest.edit.interventions import intervention
from ingest.images import rendered_image_set
from queries.graphs import query_arrow

runner = CliRunner()
KEEP = list(CLASS_NAMES[:3])
# The fixture's sweep, shared by the module (and repeated by the CLI test, which reuses it): the
# smallest sizes whose assertions still mean the same thing (random circuits: two seeds give a mean
# and a spread; eight text images per side of the contrast; nine attack images per held-out seed).
N_TEXT, N_ATTACK, N_CLEAN, N_BASELINES = 8, 18, 2, 2


def _counts(cat) -> dict[str, int]:
    with cat.session() as s:
        return {
            t: query_arrow(s, f"SELECT count(*) AS n FROM {t}").column("n")[0].as_py()
            for t in ("run", "circuit", "intervention", "evaluation", "example_image", "concept")
        }


@pytest.fixture(scope="module")
def swept(_catalog_template, tmp_path_factory):
    """One small defence sweep of typo-mini (k=2, circuit and edge pruning) in a fresh catalog."""
    path = tmp_path_factory.mktemp("defend") / "c.duckdb"
    shutil.copyfile(_catalog_template, path)
    cat = open_catalog(path)
    target = typo_target(
        n_text=N_TEXT, n_attack=N_ATTACK, n_clean_per_class=N_CLEAN, seed=1, classes=KEEP, holdout_seeds=(21,)
    )
    report = defend(
        cat,
        DefendConfig(model="typo-mini", ks=(2,), kinds=("circuit", "edge"), n_baselines=N_BASELINES, device="cpu"),
        target,
    )
    yield {"path": path, "cat": cat, "report": report, "target": target}
    close_catalogs_of(path)


def test_sweep_stores_rows_beside_random_circuits(swept):
    report, target = swept["report"], swept["target"]
    layers = zoo.get_spec("typo-mini").layers
    assert len(report.rows) == 1 + (len(layers) - 1)  # circuit pruning + edge pruning of each pair
    kinds = [(r.kind, r.pair) for r in report.rows]
    assert kinds == [("circuit", None)] + [("edge", p) for p in range(len(layers) - 1)]
    circuit = report.rows[0]
    assert circuit.k == (2,) * len(layers)
    assert 0 < circuit.edge_fraction == pytest.approx(circuit.baseline_edge_fraction)
    assert all(r.edge_fraction < circuit.edge_fraction for r in report.rows[1:])
    with swept["cat"].session() as s:
        ivs = store.list_interventions(s, circuit.circuit_id)
        by_id = {iv.id: iv for iv in ivs}
        att = [by_id[i] for i in circuit.intervention_ids[:N_BASELINES]]  # one per random circuit (seeds 0, 1)
        assert [iv.params["baseline_seed"] for iv in att] == list(range(N_BASELINES))
        rows = [{e.metric: e for e in iv.evaluations} for iv in att]
        assert set(rows[0]) == {"attack_success", "attack_accuracy", "kl"}
        assert all(r["attack_success"].value == pytest.approx(circuit.attack_success) for r in rows)
        randoms = [r["attack_success"].baseline_value for r in rows]
        assert circuit.attack_success_random == pytest.approx(np.mean(randoms))
        assert circuit.attack_success_random_sd == pytest.approx(np.std(randoms))
        assert rows[0]["attack_success"].image_set == target.attack_set.name
        clean = [by_id[i] for i in circuit.intervention_ids[N_BASELINES:]]
        assert len(clean) == len(KEEP) and all({e.metric for e in iv.evaluations} >= {"accuracy"} for iv in clean)
        mean = np.mean([next(e.value for e in iv.evaluations if e.metric == "accuracy") for iv in clean])
        assert mean == pytest.approx(circuit.clean_accuracy)
    # the catalog knows the text circuit's run and the sets prune-plan needs
    assert _counts(swept["cat"])["run"] == 1


def test_attack_metrics_match_a_plain_reference(swept):
    """Stored attack success = share of attack images whose pruned top-1 is the written class."""
    report, target = swept["report"], swept["target"]
    row = report.rows[0]
    loaded = zoo.load_model("typo-mini")
    with swept["cat"].session() as s:
        circ = store.read_circuit(s, row.circuit_id)
    x = zoo.preprocess(loaded.spec, list(target.attack_set.images))
    written = np.asarray(target.attack_set.written)
    labels = np.asarray(target.attack_set.labels)
    clean_pred = predict(loaded.module, x, device="cpu").argmax(1).numpy()
    with intervention(loaded.module, list(circ.layer_names), [list(c) for c in circ.channels], "circuit"):
        pruned_pred = predict(loaded.module, x, device="cpu").argmax(1).numpy()
    assert row.attack_success_clean == pytest.approx((clean_pred == written).mean())
    assert row.attack_success == pytest.approx((pruned_pred == written).mean())
    assert row.attack_accuracy == pytest.approx((pruned_pred == labels).mean())
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]], dtype=torch.float64)
    m = attack_metrics(logits, logits, np.array([1, 2]), np.array([0, 0]))
    assert m == {"attack_success": 0.5, "attack_accuracy": 0.5, "kl": 0.0}


def test_ablate_cli_stores_attack_metrics_and_reuses_them(swept):
    cid = swept["report"].rows[0].circuit_id
    db = str(swept["path"])
    args = ["ablate", str(cid), "--dataset", "typo:attack", "--n", "24", "--seed", "3", "--device", "cpu", "--db", db]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "attack_success" in r.output and "attack_accuracy" in r.output and "% of edges cut" in r.output
    before = _counts(swept["cat"])
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0 and "reused stored" in r2.output
    assert _counts(swept["cat"]) == before


def test_attack_set_without_written_labels_is_refused(swept):
    cat = swept["cat"]
    cid = swept["report"].rows[0].circuit_id
    real = typo_image_set("typo:attack", 12, seed=1)
    unlabelled = rendered_image_set("typo:attack#seed=1", np.stack(real.images), np.asarray(real.labels))
    before = _counts(cat)
    with pytest.raises(AttackLabelsMissing, match="written"):
        ablate(cat, cid, unlabelled, device="cpu")
    target = typo_target(n_text=4, n_attack=4, n_clean_per_class=1, classes=KEEP)
    bad = type(target)(target.text_set, unlabelled, target.clean_sets)
    with pytest.raises(AttackLabelsMissing):
        defend(cat, DefendConfig(model="typo-mini", ks=(1,), device="cpu"), bad)
    assert _counts(cat) == before


def test_recommend_picks_the_fewest_edges_that_meet_the_target():
    def row(cid, edges, att, acc):
        return DefenceRow(cid, (1,), "circuit", None, edges, edges, 0.9, att, 0.88, 0.98, acc, 0.97)

    rows = [row(1, 0.02, 0.30, 0.975), row(2, 0.04, 0.15, 0.97), row(3, 0.05, 0.10, 0.965), row(4, 0.06, 0.02, 0.90)]
    best, meets, why = recommend(rows, 0.02, 5.0)
    assert best.circuit_id == 2 and meets and "fewest edges" in why  # 4 is best but costs 8 points
    best, meets, why = recommend(rows, 0.02, 20.0)
    assert best.circuit_id == 3 and not meets and "no circuit cuts" in why
    assert recommend(rows, 0.001, 5.0)[0] is None
    with pytest.raises(DefendError):
        DefendConfig(model="typo-mini", ks=(0,)).validate()
    with pytest.raises(DefendError):
        DefendConfig(model="typo-mini", kinds=("nodes",)).validate()


def test_prune_plan_picks_the_text_circuit_with_its_evidence(swept):
    r = runner.invoke(
        app,
        [
            "prune-plan",
            "--model",
            "typo-mini",
            "--against",
            "text",
            "--keep",
            ",".join(KEEP),
            "--db",
            str(swept["path"]),
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    top = plan[0]
    assert top["concept"] == "text" and top["basis"] == "evidence"
    assert "attack_success" in top["against"] and all(c in top["keep"] for c in KEEP)
    best = max(
        swept["report"].rows,
        key=lambda x: (x.attack_success_clean - x.attack_success) - (x.clean_accuracy_clean - x.clean_accuracy),
    )
    assert top["circuit"] == best.circuit_id and top["kind"] == best.kind


def test_export_apply_gives_defended_weights_that_reproduce_the_stored_attack_success(swept, tmp_path):
    row = swept["report"].rows[0]
    mask, out = tmp_path / "text.json", tmp_path / "defended.pt"
    db = str(swept["path"])
    r = runner.invoke(app, ["export", str(row.circuit_id), "-o", str(mask), "--db", db])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["apply", "typo-mini", "--mask", str(mask), "-o", str(out)])
    assert r.exit_code == 0, r.output
    plain = zoo.get_spec("typo-mini").build().eval()
    plain.load_state_dict(torch.load(out, weights_only=True))
    target = swept["target"]
    x = zoo.preprocess(zoo.get_spec("typo-mini"), list(target.attack_set.images))
    pred = predict(plain, x, device="cpu").argmax(1).numpy()
    assert (pred == np.asarray(target.attack_set.written)).mean() == row.attack_success  # exactly
    xc = torch.cat([zoo.preprocess(zoo.get_spec("typo-mini"), list(s.images)) for s in target.clean_sets.values()])
    yc = np.concatenate([s.labels for s in target.clean_sets.values()])
    assert (predict(plain, xc, device="cpu").argmax(1).numpy() == yc).mean() == pytest.approx(row.clean_accuracy)


def test_defend_cli_prints_table_json_and_plot(swept, tmp_path):
    db = str(swept["path"])
    png = tmp_path / "tradeoff.png"
    base = [
        "defend",
        "typo-mini",
        "--k",
        "2",
        "--kinds",
        "circuit",
        "--n-text",
        str(N_TEXT),
        "--n-attack",
        str(N_ATTACK),
        "--n-clean",
        str(N_CLEAN),
        "--keep",
        ",".join(KEEP),
        "--baselines",  # the fixture's baselines and held-out seed: the command reuses its sweep
        str(N_BASELINES),
        "--holdout-seeds",
        "21",
        "--device",
        "cpu",
        "--db",
        db,
    ]
    r = runner.invoke(app, [*base, "--plot", str(png)])
    assert r.exit_code == 0, r.output
    assert "attack_success" in r.output and ("recommended: circuit" in r.output or "no recommendation" in r.output)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = _counts(swept["cat"])
    r = runner.invoke(app, [*base, "--format", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows[0]["kind"] == "circuit" and rows[0]["edges_cut"] > 0
    assert _counts(swept["cat"]) == before  # the same sweep is reused, not stored twice


@pytest.mark.parametrize(
    "args, message",
    [
        (["clip-rn50"], "no classifier head"),
        (["typo-mini", "--keep", "stripes_checker,bogus"], "unknown class 'bogus'"),
        (["typo-mini", "--k", "0"], "k must be at least 1"),
        (["typo-mini", "--holdout-seeds", "21,x"], "--holdout-seeds takes seeds"),
        (["typo-mini", "--holdout-seeds", "1"], "held-out seed 1"),
        (["typo-mini", "--baselines", "0"], "--baselines must be at least 1"),
        (["catfish-mini-nope"], "unknown model"),
    ],
)
def test_bad_input_one_error_line_and_catalog_unchanged(swept, args, message):
    before = _counts(swept["cat"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = runner.invoke(app, ["defend", *args, "--db", str(swept["path"]), "--device", "cpu"])
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], r.output
    assert _counts(swept["cat"]) == before


@pytest.mark.slow  # its budget and step rules are also asserted on `defend`'s own search below
def test_greedy_k_search_stays_within_its_budgets(swept):
    from ingest.defence.search import search_k
    from ingest.edit.interventions import edge_fraction

    report, target = swept["report"], swept["target"]
    loaded = zoo.load_model("typo-mini")
    with swept["cat"].session() as s:
        matrices = store.read_run_matrices(s, report.run_id)
    xa = zoo.preprocess(loaded.spec, list(target.search_attack.images))
    xc = zoo.preprocess(loaded.spec, list(target.search_clean.images))
    search = functools.partial(
        search_k,
        loaded.module,
        list(loaded.layers),
        matrices,
        xa,
        np.asarray(target.search_attack.written),
        xc,
        np.asarray(target.search_clean.labels),
    )
    steps = search(max_edges=0.03, budget=0.05)
    assert steps and steps[0].k == (1,) * len(loaded.layers)
    for a, b in zip(steps, steps[1:]):
        assert sum(b.k) == sum(a.k) + 1  # one neuron per size
    assert all(s.edge_fraction <= 0.03 for s in steps)
    widths = [m.shape[0] for m in matrices] + [matrices[-1].shape[1]]
    assert edge_fraction(widths, [list(range(k)) for k in steps[-1].k], "circuit") == pytest.approx(
        steps[-1].edge_fraction
    )
    assert target.search_attack.sha256 != target.attack_set.sha256  # searched on other images
    assert search(max_edges=0.001) == []


def test_defend_with_search_measures_the_searched_k(swept):
    cat, target = swept["cat"], swept["target"]
    # an edge budget of 2.5 % leaves room for a few search steps; two baselines keep the rows cheap
    cfg = DefendConfig(
        model="typo-mini",
        ks=(1,),
        kinds=("circuit",),
        search=True,
        max_edges=0.025,
        budget=0.05,
        n_baselines=N_BASELINES,
        device="cpu",
    )
    report = defend(cat, cfg, target)
    assert len(report.search) >= 3 and all(st.edge_fraction <= 0.025 for st in report.search)
    assert report.search[0].k == (1,) * 5  # one neuron per layer first, then one neuron per step
    assert all(sum(b.k) == sum(a.k) + 1 for a, b in zip(report.search, report.search[1:]))
    assert target.search_attack.sha256 != target.attack_set.sha256  # searched on other images
    best = min(report.search, key=lambda st: (st.attack_success, st.edge_fraction))
    ks = [r.k for r in report.rows]
    assert ks[0] == (1,) * 5 and best.k in ks


def test_text_circuit_is_a_contrast_run_matching_a_plain_reference(swept):
    """The default text concept: max(S(text images) − S(the same images without text), 0), stored
    with its own provenance (the plain set named in its params) and reused on a second request."""
    from ingest.cla.attribution import attribute
    from ingest.defence.contrast import ContrastError, contrast_ingest, contrast_matrices
    from ingest.pipeline import IngestConfig

    target, cat = swept["target"], swept["cat"]
    assert target.plain_set is not None and len(target.plain_set) == len(target.text_set)
    assert target.text_set.sha256 not in {target.attack_set.sha256, target.search_attack.sha256}
    with cat.session() as s:
        run = store.read_run(s, swept["report"].run_id)
        stored = store.read_run_matrices(s, run.id)
    assert run.params["contrast"]["plain_sha256"] == target.plain_set.sha256
    loaded = zoo.load_model("typo-mini")
    x_text = zoo.preprocess(loaded.spec, list(target.text_set.images))
    x_plain = zoo.preprocess(loaded.spec, list(target.plain_set.images))
    text = attribute(loaded.module, list(loaded.layers), x_text, device="cpu")
    plain = attribute(loaded.module, list(loaded.layers), x_plain, device="cpu")
    for got, a, b in zip(stored, text, plain):
        want = np.maximum(a.astype(np.float64) - b, 0)
        assert got.min() >= 0 and (want == 0).any()  # the words also weaken some edges
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(np.abs(a).max()))
    before = _counts(cat)
    again = contrast_ingest(
        cat, IngestConfig(model="typo-mini", concept="text", k=2, device="cpu"), target.text_set, target.plain_set
    )
    assert again.reused and again.run_id == run.id and _counts(cat) == before
    with pytest.raises(ContrastError):
        contrast_ingest(
            cat,
            IngestConfig(model="typo-mini", concept="text", k=2, device="cpu"),
            target.text_set,
            target.clean_sets[KEEP[0]],
        )
    with pytest.raises(ContrastError):
        contrast_matrices([np.ones((2, 3))], [np.ones((3, 2))])


def test_recommended_circuit_is_measured_on_held_out_images(swept):
    """Held-out rows: the recommended circuit on seed-21 images, against a plain reference."""
    report, target = swept["report"], swept["target"]
    best = report.recommended
    assert best is not None and [h.seed for h in report.holdout] == [21]
    h = report.holdout[0]
    seed, attack, cleans = target.holdout[0]
    assert seed == 21 and attack.sha256 != target.attack_set.sha256 and len(cleans) == len(KEEP)
    loaded = zoo.load_model("typo-mini")
    with swept["cat"].session() as s:
        circ = store.read_circuit(s, best.circuit_id)
    x = zoo.preprocess(loaded.spec, list(attack.images))
    xc = torch.cat([zoo.preprocess(loaded.spec, list(c.images)) for c in cleans])
    yc = np.concatenate([c.labels for c in cleans])
    written = np.asarray(attack.written)
    assert h.attack_success_clean == pytest.approx(
        (predict(loaded.module, x, device="cpu").argmax(1).numpy() == written).mean()
    )
    with intervention(
        loaded.module, list(circ.layer_names), [list(c) for c in circ.channels], best.kind, best.pair or 0
    ):
        assert h.attack_success == pytest.approx(
            (predict(loaded.module, x, device="cpu").argmax(1).numpy() == written).mean()
        )
        assert h.clean_accuracy == pytest.approx(
            (predict(loaded.module, xc, device="cpu").argmax(1).numpy() == yc).mean()
        )
    assert h.as_dict()["seed"] == 21 and report.holdout_cut == pytest.approx(h.cut)
    with pytest.raises(DefendError, match="held-out seed 1"):
        typo_target(n_text=4, n_attack=4, n_clean_per_class=1, seed=1, classes=KEEP, holdout_seeds=(1,))
    with pytest.raises(DefendError, match="text concept"):
        typo_target(n_text=4, n_attack=4, n_clean_per_class=1, classes=KEEP, text="typo:clean")
