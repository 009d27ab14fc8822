"""Everything that runs a model: the zoo, Cross-Layer Attribution, circuit search, interventions,
mask apply/bake, the CatFish-synth dataset, training, and the pipeline that writes to the catalog.

    from ingest import attribute, find_circuit, load_model, preprocess
    m = load_model("catfish-mini")
    S = attribute(m.module, m.layers, preprocess(m.spec, images))   # list of (C_i, C_{i+1}) float32
    circuit = find_circuit(S, k=3)

    from catalog import open_catalog
    from ingest import IngestConfig, ingest, read_image_dir
    result = ingest(open_catalog("circuits.duckdb", create=True),
                    IngestConfig(model="catfish-mini", concept="stripes"), read_image_dir("imgs/"))

Names are imported on first use (torch only then), so importing a submodule or `circuits --help`
does not pay for torch; `dir(ingest)`, tab completion and type checkers still see all of them.
Importing the package sets `OMP_WAIT_POLICY=PASSIVE` (unless set) before torch can start OpenMP:
see `ingest.threads`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalog._lazy import lazy_exports
from ingest.threads import set_wait_policy

set_wait_policy()  # before any torch import: OpenMP reads it only once, when torch loads

if TYPE_CHECKING:
    from ingest import cla, datasets, edit, zoo
    from ingest.ablation import AblationResult, ablate
    from ingest.cla import Circuit, CLAError, attribute, attribute_reference, capture_layers, find_circuit
    from ingest.edit.deploy import apply_to_file
    from ingest.edit.interventions import EvaluationResult, evaluate, prune_circuit, prune_edges
    from ingest.edit.mask_apply import apply_mask, bake_mask
    from ingest.edit.masked_export import MaskedModel, export_program
    from ingest.images import ImageSet, read_image_dir
    from ingest.pipeline import IngestConfig, IngestResult, ingest, resolve_images
    from ingest.refinement import refine
    from ingest.train import TrainConfig, train_catfish
    from ingest.zoo import LoadedModel, ModelSpec, available_models, load_model, preprocess, register

# Sub-package first: a definition moving between the modules of a sub-package keeps its export.
_CLA = ("ingest.cla",)
_ZOO = ("ingest.zoo",)
_EDIT = ("ingest.edit", "ingest.edit.prune", "ingest.edit.interventions")
_MASK = ("ingest.edit", "ingest.edit.mask_apply")
_PIPELINE = ("ingest.pipeline",)

__all__, __getattr__, __dir__ = lazy_exports(
    "ingest",
    {
        "CLAError": _CLA,
        "Circuit": _CLA,
        "attribute": _CLA,
        "attribute_reference": _CLA,
        "capture_layers": _CLA,
        "find_circuit": _CLA,
        "LoadedModel": _ZOO,
        "ModelSpec": _ZOO,
        "available_models": _ZOO,
        "load_model": _ZOO,
        "preprocess": _ZOO,
        "register": _ZOO,
        "EvaluationResult": _EDIT,
        "evaluate": _EDIT,
        "prune_circuit": _EDIT,
        "prune_edges": _EDIT,
        "apply_mask": _MASK,
        "bake_mask": _MASK,
        "apply_to_file": ("ingest.edit.deploy",),
        "MaskedModel": ("ingest.edit.masked_export",),
        "export_program": ("ingest.edit.masked_export",),
        "ImageSet": ("ingest.images",),
        "read_image_dir": ("ingest.images",),
        "IngestConfig": _PIPELINE,
        "IngestResult": _PIPELINE,
        "ingest": _PIPELINE,
        "refine": ("ingest.refinement",),
        "resolve_images": _PIPELINE,
        "AblationResult": ("ingest.ablation",),
        "ablate": ("ingest.ablation",),
        "TrainConfig": ("ingest.train",),
        "train_catfish": ("ingest.train",),
    },
    modules=("cla", "datasets", "edit", "zoo"),
)
