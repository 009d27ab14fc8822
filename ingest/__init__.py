"""Everything that runs a model: the zoo, Cross-Layer Attribution, circuit search, interventions,
mask apply/bake, the CatFish-synth dataset, training, and the pipeline that writes to the catalog.

    from ingest import attribute, find_circuit, load_model, preprocess
    m = load_model("catfish-mini")
    S = attribute(m.module, m.layers, preprocess(m.spec, images))   # list of (C_i, C_{i+1}) float32
    circuit = find_circuit(S, k=3)

    from catalog import open_catalog
    from ingest import IngestConfig, ingest_concept, read_image_dir
    cat = open_catalog("circuits.duckdb", create=True)
    result = ingest_concept(cat, IngestConfig(model=my_module, layers=["conv1", "conv2"],
                            concept="stripes", k=3), read_image_dir("imgs/"))

`IngestConfig.model` and `ablate(model=...)` take the `torch.nn.Module` you hold (a zoo name or
`path/file.py:factory` string works too: that is the command line's way). The first argument of
every call that reads or writes the catalog is the catalog: reads (`queries`) take a `Session`
(you own its transaction); calls that write rows or files or run a model (`ingest_concept`,
`refine`, `ablate`, `queries.export_mask`) take the `Catalog`, because they open their own short
transactions and let go of a DuckDB file while they compute; `queries.mask_from_circuit` takes either.

Names are imported on first use (torch only then), so importing a submodule or `circuits --help`
does not pay for torch; `dir(ingest)`, tab completion and type checkers still see all of them.
Importing the package changes no process state (threads, environment): the `circuits` command sets
torch's threads and OpenMP's wait policy; a script may call `ingest.threads.set_wait_policy()`
before importing torch and `ingest.threads.configure(n)` (or pass `threads=`), see `ingest.threads`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalog._lazy import lazy_exports

if TYPE_CHECKING:
    from ingest import cla, datasets, edit, zoo
    from ingest.ablation import AblationResult, ablate
    from ingest.cla import Circuit, CLAError, attribute, attribute_reference, capture_layers, find_circuit
    from ingest.edit.deploy import apply_to_file
    from ingest.edit.interventions import EvaluationResult, evaluate, prune_circuit, prune_edges
    from ingest.edit.mask_apply import apply_mask, bake_mask
    from ingest.edit.masked_export import MaskedModel, export_program
    from ingest.featurevis import FeatureVisConfig, feature_visualisations, recompute_run_featurevis
    from ingest.image_sets import resolve_images
    from ingest.images import ImageSet, read_image_dir
    from ingest.module_model import ModuleError
    from ingest.pipeline import IngestConfig, IngestResult, ingest, ingest_concept
    from ingest.reference import reference_set, store_reference_patches
    from ingest.refinement import refine
    from ingest.run_media import RunModel, load_run_model, recompute_run_thumbnails, store_patches
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
        "ingest": _PIPELINE,  # the old name of ingest_concept, kept for one release
        "ingest_concept": _PIPELINE,
        "ModuleError": ("ingest.module_model",),
        "refine": ("ingest.refinement",),
        "resolve_images": ("ingest.image_sets",),
        "AblationResult": ("ingest.ablation",),
        "ablate": ("ingest.ablation",),
        "FeatureVisConfig": ("ingest.featurevis",),
        "feature_visualisations": ("ingest.featurevis",),
        "recompute_run_featurevis": ("ingest.featurevis",),
        "reference_set": ("ingest.reference",),
        "store_reference_patches": ("ingest.reference",),
        "RunModel": ("ingest.run_media",),
        "load_run_model": ("ingest.run_media",),
        "recompute_run_thumbnails": ("ingest.run_media",),
        "store_patches": ("ingest.run_media",),
        "TrainConfig": ("ingest.train",),
        "train_catfish": ("ingest.train",),
    },
    modules=("cla", "datasets", "edit", "zoo"),
)
