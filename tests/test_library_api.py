"""The library as a notebook uses it: a model object in, the catalog first, parameters in errors.

`IngestConfig(model=module)` with any `nn.Module` (identity: class name + weights sha256, no code
stored); `ablate` needs the module passed again; `mask_from_circuit(cat, circuit)` in memory;
library errors name parameters (`images=`) and the CLI prints its flags instead.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from catalog import store  # noqa: E402 (after the torch check)
from catalog.engine import open_catalog  # noqa: E402 (after the torch check)
from catalog.errors import CircuitsError  # noqa: E402 (after the torch check)
from ingest.ablation import ablate  # noqa: E402 (after the torch check)
from ingest.image_sets import resolve_images  # noqa: E402 (after the torch check)
from ingest.module_model import ModuleError  # noqa: E402 (after the torch check)
from ingest.pipeline import IngestConfig, IngestError, ingest_concept  # noqa: E402 (after the torch check)
from ingest.stored_model import UntrustedModel  # noqa: E402 (after the torch check)
from ingest.zoo import weights_sha256  # noqa: E402 (after the torch check)
from queries.mask_export import export_mask, mask_from_circuit  # noqa: E402 (after the torch check)


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
        self.b = torch.nn.Sequential(torch.nn.Conv2d(4, 5, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(5, 3))

    def forward(self, x):
        return self.head(self.b(self.a(x)))


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyNet()
    cat = open_catalog(tmp_path_factory.mktemp("api") / "c.duckdb", create=True)
    images = resolve_images(dataset="catfish:stripes", n=3, seed=0)
    result = ingest_concept(cat, IngestConfig(model=model, concept="stripes", layers=("a", "b"), k=2), images)
    yield cat, model, images, result
    cat.close()


def test_a_module_is_catalogued_by_class_name_and_weights(stored):
    cat, model, images, result = stored
    assert result.status == "stored"
    with cat.session() as s:
        circuit = store.read_circuit(s, result.circuit_id)
        ref = store.find_model(s, "TinyNet", circuit.weights_sha256)
    assert circuit.model == "TinyNet" and circuit.weights_sha256 == weights_sha256(model)
    assert ref.architecture.endswith("test_library_api.TinyNet") and ref.layer_order == ("a", "b")
    again = ingest_concept(cat, IngestConfig(model=model, concept="stripes", layers=("a", "b"), k=2), images)
    assert (again.status, again.run_id, again.circuit_id) == ("skipped", result.run_id, result.circuit_id)


def test_ablate_needs_the_module_again_and_checks_its_weights(stored):
    cat, model, images, result = stored
    with pytest.raises(UntrustedModel, match="never run"):
        ablate(cat, result.circuit_id, images)  # the catalog holds no code to rebuild TinyNet
    effect = ablate(cat, result.circuit_id, images, model=model)
    assert set(effect.intervened) == {"agreement", "clean_top1_prob", "kl"} and not effect.reused
    other = TinyNet()  # other weights: refused, nothing stored
    with pytest.raises(IngestError, match="weights the circuit was found with"):
        ablate(cat, result.circuit_id, images, model=other)


def test_a_module_needs_layers_and_takes_no_weights_file(stored):
    cat, model, images, _ = stored
    with pytest.raises(ModuleError, match="`layers=`"):
        ingest_concept(cat, IngestConfig(model=model, concept="x"), images)
    with pytest.raises(IngestError, match="`weights=`"):
        ingest_concept(cat, IngestConfig(model=model, concept="x", layers=("a", "b"), weights="w.pt"), images)


def test_mask_from_circuit_takes_the_catalog_or_a_session(stored, tmp_path):
    cat, _, _, result = stored
    from_cat = mask_from_circuit(cat, result.circuit_id)
    with cat.session() as s:
        from_session = mask_from_circuit(s, result.circuit_id, kind="edge")
        ref = store.read_circuit(s, result.circuit_id)
    assert from_cat == mask_from_circuit(cat, ref)
    assert from_cat == export_mask(cat, result.circuit_id, tmp_path / "m.json").mask
    assert from_cat.model.name == "TinyNet" and from_session.edge is not None
    with pytest.raises(TypeError, match="unexpected keyword argument 'kinds'"):
        export_mask(cat, result.circuit_id, tmp_path / "e.json", kinds="edge")  # a misspelling is not ignored
    assert not (tmp_path / "e.json").exists()
    assert {name: m.channels for name, m in from_cat.modules.items()} == dict(
        zip(ref.layer_names, map(tuple, ref.channels))
    )


def test_errors_name_parameters_and_the_cli_names_flags():
    from circuits.cli.render import cli_message

    with pytest.raises(CircuitsError) as caught:
        resolve_images()
    message = str(caught.value)
    assert "`images=`" in message and "`dataset=`" in message
    assert cli_message(message) == message.replace("`images=`", "--images").replace("`dataset=`", "--dataset")
    assert cli_message("`batch_size=` must be positive (k=3 is fine)") == "--batch-size must be positive (k=3 is fine)"
