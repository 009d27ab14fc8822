"""A zero-shot CLIP classifier and its typographic-attack target, for `circuits defend --classes`.

CLIP classifies an image by comparing its image embedding with the text embeddings of class
prompts ("a photo of a {class}"). `ZeroShotClassifier` wraps an image tower (`clip-rn50`, or any
zoo/user model returning `(B, D)` embeddings) with fixed class embeddings `(C, D)` into a module
returning logits `(B, C)`; the tower's submodules keep their names (`layer1`, …), so circuits found
on the tower prune the classifier unchanged.

Class embeddings come from, in order: a file the user gives (`--class-embeddings`: a `.pt`/`.npy`
array `(C, D)` or a `{class: vector}` dict), or open_clip's text tower when `open-clip-torch` is
installed (`pip install 'visual-circuit-catalog[clip]'`; the same weights file holds both towers),
or — for plumbing tests only — seeded random vectors (`random_embeddings=True`).

`clip_target(...)` builds the `ingest.defence.defend.DefenceTarget`: the text concept rendered at the
model's input size (the class names and other words), typographic attacks written on the user's
images (a different class's name per image, recorded), and the clean images per class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from catalog.errors import CircuitsError

__all__ = [
    "PROMPT",
    "NoZeroShotHead",
    "ZeroShotClassifier",
    "class_embeddings",
    "clip_target",
    "open_clip_text_embeddings",
]

PROMPT = "a photo of a {}."  # CLIP's zero-shot template
LOGIT_SCALE = 100.0  # CLIP's learned temperature saturates at 100


class NoZeroShotHead(CircuitsError):
    """The model cannot act as a zero-shot classifier (no embeddings, or none to compare with)."""


class ZeroShotClassifier(nn.Module):
    """Image tower + fixed, normalised class text embeddings -> logits `(B, C)`.

    The tower's children are registered on this module under their own names, so a layer path
    like `layer3` means the same module in the tower and here.
    """

    _tower: nn.Module  # set with object.__setattr__ below
    class_embeddings: torch.Tensor  # a buffer

    def __init__(self, tower: nn.Module, embeddings: torch.Tensor, logit_scale: float = LOGIT_SCALE) -> None:
        super().__init__()
        for name, child in tower.named_children():
            self.add_module(name, child)
        for name, p in tower.named_parameters(recurse=False):
            self.register_parameter(name, p)
        object.__setattr__(self, "_tower", tower)  # not a submodule: its children are already ours
        self.register_buffer("class_embeddings", F.normalize(embeddings.float(), dim=-1))  # (C, D)
        self.logit_scale = float(logit_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self._tower(x)  # (B, D)
        return self.logit_scale * F.normalize(z, dim=-1) @ self.class_embeddings.T  # (B, C)


def _embedding_dim(tower: nn.Module, input_size: int) -> int:
    """The tower's output width, from one forward on zeros; refuses non-embedding outputs."""
    was = tower.training
    tower.eval()
    try:
        with torch.no_grad():
            out = tower(torch.zeros(1, 3, input_size, input_size, device=next(tower.parameters()).device))
    finally:
        tower.train(was)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        desc = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise NoZeroShotHead(f"the model outputs {desc}, not image embeddings (B, D): it has no head for zero-shot")
    return int(out.shape[1])


def _read_embeddings(path: Path, classes: Sequence[str]) -> torch.Tensor:
    if not path.is_file():
        raise NoZeroShotHead(f"class-embeddings file {path} does not exist: give a (C, D) .pt or .npy file")
    try:
        obj = np.load(path) if path.suffix == ".npy" else torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the user's to fix
        raise NoZeroShotHead(
            f"cannot read class embeddings from {path} ({type(exc).__name__}): "
            "save a (C, D) tensor with torch.save or numpy.save"
        ) from None
    if isinstance(obj, dict):
        missing = [c for c in classes if c not in obj]
        if missing:
            raise NoZeroShotHead(f"{path} has no embedding for class {missing[0]!r}: add one per `classes=` entry")
        obj = torch.stack([torch.as_tensor(np.asarray(obj[c])) for c in classes])
    t = torch.as_tensor(np.asarray(obj)).float()
    if t.dim() != 2 or t.shape[0] != len(classes):
        raise NoZeroShotHead(f"{path} holds shape {tuple(t.shape)}: need one row per class ({len(classes)}, D)")
    return t


def open_clip_text_embeddings(
    classes: Sequence[str], *, model: str = "RN50", pretrained: str | None = None, prompt: str = PROMPT
) -> torch.Tensor:
    """Class text embeddings `(C, D)` from open_clip's text tower (needs `open-clip-torch`).

    Args:
        pretrained: an open_clip weights file (e.g. the RN50 OpenAI checkpoint); nothing is
            downloaded when it is a local path.

    Raises:
        NoZeroShotHead: open_clip is not installed.
    """
    try:
        import open_clip
    except ModuleNotFoundError:
        raise NoZeroShotHead(
            "zero-shot needs class text embeddings: pass `embeddings=` FILE (C, D), or install "
            "open-clip-torch (pip install 'visual-circuit-catalog[clip]') and pass `weights=`"
        ) from None
    clip_model, _, _ = open_clip.create_model_and_transforms(model, pretrained=pretrained)
    tokenizer = open_clip.get_tokenizer(model)
    with torch.no_grad():
        return clip_model.encode_text(tokenizer([prompt.format(c) for c in classes])).float()


def class_embeddings(
    classes: Sequence[str],
    dim: int,
    *,
    path: str | Path | None = None,
    weights: str | None = None,
    random_embeddings: bool = False,
    seed: int = 0,
) -> torch.Tensor:
    """Class embeddings `(C, dim)` from a file, open_clip, or (plumbing only) a seeded random draw.

    Raises:
        NoZeroShotHead: none available, or their width differs from the tower's `dim`.
    """
    if path is not None:
        emb = _read_embeddings(Path(path).expanduser(), classes)
    elif random_embeddings:
        emb = torch.from_numpy(np.random.default_rng(seed).standard_normal((len(classes), dim))).float()
    else:
        emb = open_clip_text_embeddings(classes, pretrained=weights)
    if emb.shape[1] != dim:
        raise NoZeroShotHead(
            f"class embeddings are {emb.shape[1]}-d but the image tower outputs {dim}-d: "
            "use the text embeddings of the same CLIP model"
        )
    return emb


def _class_folders(images: Path, classes: Sequence[str], label: str | None) -> dict[str, Path]:
    from ingest.datasets.typo_sets import UnknownClass

    if label is not None:
        if label not in classes:
            raise UnknownClass(f"unknown class {label!r} for `label=`: the classes are {', '.join(classes)}")
        return {label: images}
    folders = {c: images / c for c in classes if (images / c).is_dir()}
    if not folders:
        raise UnknownClass(
            f"{images} has no subfolder named after a class ({', '.join(classes)}): "
            "give one subfolder per class, or `label=` CLASS for a folder of one class"
        )
    return folders


def clip_target(
    model: str,
    classes: Sequence[str],
    images: str | Path,
    *,
    weights: str | None = None,
    layers: Sequence[str] | None = None,
    label: str | None = None,
    embeddings: str | Path | None = None,
    random_embeddings: bool = False,
    n_text: int = 64,
    seed: int = 1,
    device: str = "cpu",
    attack_images: str | Path | None = None,
):
    """The defence target of a zero-shot classifier over `classes` on the user's images.

    Args:
        model: an image tower in the zoo (`clip-rn50`) or a user factory returning embeddings.
        classes: the class names (prompts are `PROMPT.format(name)`).
        images: a folder with one subfolder per class (named as in `classes`), or a folder of
            one class's images with `label`.
        embeddings, random_embeddings, weights: where the class embeddings come from (see the module docstring).
        n_text: text-concept images for CLA; seed: which class is written where.
        attack_images: attack images made elsewhere (with `written.csv`), used instead of
            writing attacks on `images`; they are of class `label` when given.

    Returns:
        An `ingest.defence.defend.DefenceTarget` whose `model_cache` holds the zero-shot classifier.

    Raises:
        AttackLabelsMissing: `attack_images` without a `written.csv`.
        UnknownClass: bad `classes` or `label`, or no class subfolder.
        NoZeroShotHead: the model has no embedding output, or no class embeddings are available.
        ImageSetError: a folder without readable images.
    """
    from ingest import zoo
    from ingest.datasets.typo import DISTRACTOR_WORDS
    from ingest.datasets.typo_sets import (
        AttackImageSet,
        attack_from_dir,
        check_classes,
        read_attack_dir,
        text_image_set,
    )
    from ingest.defence.defend import DefenceTarget
    from ingest.images import read_image_dir

    classes = check_classes(classes)
    if zoo.get_spec(model).labels is not None:
        raise NoZeroShotHead(
            f"{model} is a classifier with its own classes, not an image tower: run "
            f"`circuits defend {model}` without `classes=`"
        )
    folders = _class_folders(Path(images).expanduser(), classes, label)
    given_attack = None if attack_images is None else read_attack_dir(attack_images, classes, label=label)
    loaded = zoo.load_model(model, weights=weights, layers=layers, device=device)
    size = loaded.spec.input_size
    assert size is not None, "an image tower's spec fixes its input size"
    dim = _embedding_dim(loaded.module, size)
    emb = class_embeddings(classes, dim, path=embeddings, weights=weights, random_embeddings=random_embeddings)
    classifier = ZeroShotClassifier(loaded.module, emb).eval()
    spec = dataclasses.replace(loaded.spec, labels=tuple(classes))
    cache = {(model, weights, tuple(loaded.layers)): dataclasses.replace(loaded, spec=spec, module=classifier)}

    clean_sets, attacks = {}, []
    attack_labels: list[int] = []
    attack_written: list[int] = []
    for c, folder in folders.items():
        plain = read_image_dir(folder)
        clean_sets[c] = dataclasses.replace(plain, labels=(classes.index(c),) * len(plain))
        made = attack_from_dir(folder, classes, seed=seed, label=c)
        assert made.labels is not None and made.written is not None, "attack_from_dir(label=...) records both"
        attacks.append(made)
        attack_labels += made.labels
        attack_written += made.written
    attack = given_attack or AttackImageSet(
        f"attack:{Path(images).expanduser().resolve()}#seed={seed}",
        tuple(im for a in attacks for im in a.images),
        tuple(h for a in attacks for h in a.sha256s),
        tuple(s for a in attacks for s in a.sources),
        (),
        tuple(attack_labels),
        written=tuple(attack_written),
        class_names=tuple(classes),
    )
    text = text_image_set(n_text, seed=seed, words=(*classes, *DISTRACTOR_WORDS), size=size)
    return DefenceTarget(text_set=text, attack_set=attack, clean_sets=clean_sets, model_cache=cache, force=True)
