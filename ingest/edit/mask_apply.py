"""Apply a pruning mask (catalog.mask_file.Mask) to a model: with scoped hooks, or baked into weights.

* `check(model, mask)` refuses a mask made for other weights, naming modules the model lacks, or
  (given an example input) recording other channel counts than the model's.
* `apply_mask(model, mask)` is a context manager: inside it, forward passes are pruned as the mask
  says (circuit pruning or docs/method.md, "Interventions" edge pruning, through `ingest.edit.prune`); the hooks are
  removed on exit. Works for any model.
* `bake_mask(model, mask)` returns an edited copy of the state dict with which a plain model (no
  hooks) computes exactly what the hooked model computes, for circuit masks whose channels are
  made by, or read only by, conv/BN/linear layers (`ingest.edit.bake_plan` says how and refuses the
  rest). The model itself is not changed.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from catalog.atomic import atomic_path
from catalog.mask_file import Mask, MaskError
from catalog.mask_io import read_mask
from catalog.vocab import MaskKind
from ingest.cla.heads import HeadSpecError, is_head_layer, module_path, read_heads
from ingest.edit.bake_plan import BakePlan, NotBakeable, apply_edits, plan_bake, require_circuit_kind
from ingest.edit.prune import prune_circuit, prune_edges
from ingest.hooks import channel_dim, scoped_hooks
from ingest.zoo.preprocessing import Preprocessing

__all__ = [
    "BakedFile",
    "MaskError",
    "NotBakeable",
    "apply_mask",
    "bake_loaded",
    "bake_mask",
    "check",
    "load_for_mask",
    "plan_bake",
    "verify_bake",
]

EXACT_TOLERANCE = 1e-5  # baking only zeroes entries, so baked and hooked outputs agree to rounding


def _short(sha: str) -> str:
    return f"{sha[:12]}…"


def check(
    model: nn.Module,
    mask: Mask,
    *,
    model_name: str | None = None,
    weights_sha256: str | None = None,
    example: torch.Tensor | None = None,
) -> None:
    """Refuse a mask that does not fit the model.

    Args:
        model: the network the mask is to be applied to.
        mask: the mask.
        model_name: the model's registry name, if known (checked against the mask's).
        weights_sha256: the sha256 of the model's weights if already known (else computed with
            `ingest.zoo.weights.weights_sha256`).
        example: an input batch; when given, one forward pass checks every module's channel count.

    Raises:
        MaskError: another model name, other weights, unknown module paths, or channel counts that
            differ from the mask's widths; the message names the mismatch and the next step.
    """
    if model_name is not None and model_name != mask.model.name:
        raise MaskError(f"mask was made for model {mask.model.name!r}, not {model_name!r}")
    if weights_sha256 is None:
        from ingest.zoo.weights import weights_sha256 as sha_of

        weights_sha256 = sha_of(model)
    if weights_sha256 != mask.model.weights_sha256:
        raise MaskError(
            f"mask was made for weights {_short(mask.model.weights_sha256)} but the model's weights are "
            f"{_short(weights_sha256)}; pass the weights the circuit was found on (`weights=`)"
        )
    names = {n for n, _ in model.named_modules() if n}
    missing = [p for p in mask.modules if module_path(p) not in names]
    if missing:
        close = difflib.get_close_matches(missing[0], sorted(names), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise MaskError(
            f"mask names modules the model does not have: {', '.join(missing)}{hint}; "
            f"was it made for another architecture than {mask.model.name}?"
        )
    for path in mask.modules:
        if is_head_layer(path):
            try:
                read_heads(model, path)
            except HeadSpecError as exc:
                raise MaskError(f"mask has head units on {path}, which this model cannot give: {exc}") from None
    if example is not None:
        with _width_check(model, mask), torch.no_grad():
            model(example)


def _width_check(model: nn.Module, mask: Mask):
    """Scoped hooks that raise MaskError when a module's output has another channel count than recorded."""

    def make(path: str, width: int):
        def hook(_m, _inp, out):
            if isinstance(out, torch.Tensor) and out.dim() in (2, 3, 4):
                actual = out.shape[channel_dim(out, path)]
                if actual != width:
                    raise MaskError(f"{path} has {actual} channels but the mask was made for a width of {width}")

        return hook

    return scoped_hooks(model, {path: make(path, mm.width) for path, mm in mask.modules.items()})


@contextmanager
def apply_mask(model: nn.Module, mask: Mask, *, verify: bool = True) -> Iterator[nn.Module]:
    """Prune the model as the mask says while the context is open (scoped hooks).

    Circuit masks zero each module's listed output channels. Edge masks cut the mask's src → dst
    edges (docs/method.md, "Interventions"): each forward runs a second pass with src's channels zeroed, and dst's listed
    channels are taken from it.

    Args:
        model: any network whose mask modules return tensors.
        mask: the mask.
        verify: check the weights hash and module names first (see `check`); channel counts are
            checked on every forward pass either way.

    Yields:
        The model (unchanged outside the context).

    Raises:
        MaskError: the mask does not fit the model.
    """
    if verify:
        check(model, mask)
    with ExitStack() as stack:
        stack.enter_context(_width_check(model, mask))
        if mask.kind == MaskKind.circuit:
            stack.enter_context(prune_circuit(model, list(mask.modules), [m.channels for m in mask.modules.values()]))
        else:
            e = mask.edge
            assert e is not None, "Mask.__post_init__ requires an edge for an edge mask"
            stack.enter_context(prune_edges(model, [e.src, e.dst], [e.src_channels, e.dst_channels], pair=0))
        yield model


def bake_mask(
    model: nn.Module, mask: Mask, *, verify: bool = True, plan: BakePlan | None = None
) -> dict[str, torch.Tensor]:
    """A copy of the model's state dict, edited so the plain model behaves as `apply_mask` does.

    Only entries are zeroed (see `ingest.edit.bake_plan` for which and why that is exact); the plan is
    read from the model's graph, so `verify_bake` on a sample batch is a cheap second opinion
    (`ingest.edit.deploy.apply_to_file` always runs it).

    Args:
        model: the network (not modified).
        mask: a circuit mask.
        verify: check the weights hash and module names first (see `check`).
        plan: a plan from `plan_bake(model, mask)`, if already made.

    Returns:
        The edited state dict (new tensors), loadable with `load_state_dict` into a model built
        the same way.

    Raises:
        NotBakeable: an edge mask, or a module whose channels cannot be zeroed exactly by editing
            weights (the message names the module and why; use `apply_mask` instead).
        MaskError: the mask does not fit the model.
    """
    if verify:
        check(model, mask)
    plan = plan if plan is not None else plan_bake(model, mask)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    apply_edits(state, plan.edits)
    return state


def verify_bake(model: nn.Module, mask: Mask, state: dict[str, torch.Tensor], example: torch.Tensor) -> float:
    """Largest absolute difference between the baked and the hook-pruned model on `example`.

    Args:
        model: the unpruned model (not modified; a copy receives `state`).
        mask: the mask that was baked.
        state: the state dict from `bake_mask`.
        example: an input batch.

    Returns:
        max |baked(example) − hooked(example)| (0.0 when the bake is exact).
    """
    plain = copy.deepcopy(model)
    plain.load_state_dict(state)
    was_training = model.training
    model.eval()
    plain.eval()
    try:
        with torch.no_grad():
            baked = plain(example)
            with apply_mask(model, mask, verify=False):
                hooked = model(example)
    finally:
        model.train(was_training)
    return float((baked - hooked).abs().max())


@dataclass(frozen=True)
class BakedFile:
    """A state dict `bake_loaded` wrote and how it was checked."""

    path: Path
    model: str
    weights_source: str  # as ingest.zoo.registry reports it: file:…, bundled:…, cache:… or random-init
    mask: Mask
    plan: BakePlan
    max_abs_diff: float  # baked vs hook-pruned model on a random batch


def bake_loaded(loaded, mask: Mask, example: torch.Tensor, out: Path) -> BakedFile:
    """Bake a circuit mask into the weights of a model loaded and checked by `load_for_mask`, check the
    result against the hook-pruned model on `example`, and save the state dict to `out` (safetensors
    for a `.safetensors` name, else `torch.save`); `ingest.edit.deploy.apply_to_file` is the entry point.

    Raises:
        NotBakeable: an edge mask or a module that cannot be baked exactly (nothing is written).
    """
    require_circuit_kind(mask)
    model = loaded.module
    model_name = loaded.spec.name
    plan = plan_bake(model, mask)
    state = bake_mask(model, mask, verify=False, plan=plan)
    diff = verify_bake(model, mask, state, example)
    if not diff <= EXACT_TOLERANCE:
        raise AssertionError(f"baked and hook-pruned {model_name} differ by {diff:g}: a bug in ingest.edit.bake_plan")
    with atomic_path(out) as tmp:  # whole or not at all; the target is replaced only at the end
        if out.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        else:
            torch.save(state, tmp)
    return BakedFile(out, loaded.spec.name, loaded.weights_source, mask, plan, diff)


def _check_out(out: Path, suffixes: tuple[str, ...], *, mask_path, weights) -> None:
    for src, what in ((weights, "`weights=`"), (mask_path, "`mask_path=`")):
        if src is not None and _same_path(out, Path(src)):
            raise MaskError(f"`out=` {out} is also the {what} file: write the pruned model to another file")
    if out.suffix.lower() not in suffixes:
        raise MaskError(f"`out=` {out}: name the file {', '.join('*' + s for s in suffixes)}")
    if not out.parent.is_dir():
        raise MaskError(f"`out=` {out}: folder {out.parent} does not exist (create it first)")


def load_for_mask(
    model_name: str,
    mask_path: str | Path,
    *,
    weights=None,
    check_batch: int = 2,
    images: Callable[[Mask, Preprocessing], torch.Tensor | None] | None = None,
):
    """Read a mask file, load the zoo model it was made for and check that they fit.

    Args:
        images: given the mask and the model's preprocessing, the check batch (e.g. the images of
            the run the mask came from), or None for a random batch of the model's input shape.

    Returns:
        (the `LoadedModel` in eval mode on the CPU, the mask, the check batch).

    Raises:
        MaskError: unreadable mask, or one made for another model, weights or layout.
        ZooError: the model or weights cannot be loaded.
    """
    from ingest import zoo

    mask = read_mask(mask_path)
    if mask.model.name != model_name:
        raise MaskError(f"mask {mask_path} was made for model {mask.model.name!r}, not {model_name!r}")
    try:
        loaded = zoo.load_model(model_name, weights=weights, layers=list(mask.modules))
    except zoo.UnknownLayer as exc:
        raise MaskError(f"mask {mask_path} does not fit {model_name}: {exc}") from None
    loaded.module.cpu().eval()
    example = images(mask, loaded.spec.pp) if images is not None else None
    if example is None:
        example = loaded.spec.pp.example(check_batch)  # (B, C, S, S); S = 224 for keep-size models
    from ingest.user_code import forward_time_limit, user_model_error

    try:
        with forward_time_limit(f"the model's forward pass on {len(example)} images"):
            check(
                loaded.module, mask, model_name=loaded.spec.name, weights_sha256=loaded.weights_sha256, example=example
            )
            with torch.no_grad():
                out = loaded.module(example)
    except Exception as exc:
        err = user_model_error(exc, "its forward pass on the check images (before anything was written)")
        if err is None:
            raise
        raise err from exc
    if not isinstance(out, torch.Tensor):
        raise MaskError(
            f"{model_name} returns a {type(out).__name__} from its forward, not a tensor: a pruned copy is checked "
            "against the hooked model output by output, so the model must return one tensor"
        )
    return loaded, mask, example


def _same_path(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (a link or another spelling counts)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.expanduser().resolve() == b.expanduser().resolve()
