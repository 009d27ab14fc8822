"""`circuits apply` as a library call: a deployable pruned model for any mask on any model.

Where the mask can be baked exactly into weights (`ingest.edit.bake_plan`), a state dict is
written, as before. Where it cannot (a channel of a residual stream, an edge mask) the mask must
travel with the model: a `torch.export` program (`.pt2`, loads with only torch) and, with the
`[export]` extra, an ONNX file checked with onnxruntime (`ingest.edit.masked_export`). Every file
is loaded back and compared with the hook-pruned model on a check batch before it is kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from catalog.atomic import atomic_path
from catalog.mask_file import Mask
from ingest.edit.bake_plan import NotBakeable, plan_bake, require_circuit_kind
from ingest.edit.mask_apply import EXACT_TOLERANCE, BakedFile, _check_out, apply_mask, bake_loaded, load_for_mask
from ingest.edit.masked_export import (
    ExportRefused,
    ProgramCheck,
    check_program,
    export_program,
    float32_error,
    onnx_available,
    write_onnx,
)

__all__ = ["PROGRAM_SUFFIXES", "WEIGHT_SUFFIXES", "AppliedMask", "apply_to_file", "bakeable"]

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
PROGRAM_SUFFIXES = (".pt2", ".onnx")


@dataclass(frozen=True)
class AppliedMask:
    """What `apply_to_file` wrote, and why that kind."""

    model: str
    weights_source: str
    mask: Mask
    baked: BakedFile | None  # the state dict, when the mask was baked into weights
    programs: tuple[ProgramCheck, ...]  # the .pt2 (and .onnx) otherwise
    reason: str  # why this kind was written
    onnx_skipped: str | None = None  # why no ONNX file, when none was written

    @property
    def kind(self) -> str:
        return "weights" if self.baked is not None else "program"


def bakeable(model: torch.nn.Module, mask: Mask) -> str | None:
    """None when the mask bakes exactly into the model's weights, else why not (one line)."""
    try:
        require_circuit_kind(mask)
        plan_bake(model, mask)
    except NotBakeable as exc:
        return str(exc).split(" (`circuits apply` writes")[0].split("; `circuits apply` writes")[0]
    return None


def apply_to_file(
    model_name: str,
    mask_path: str | Path,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    check_batch: int = 2,
    images=None,
) -> AppliedMask:
    """Write the model pruned by the mask: baked weights when exact, else a masked program.

    `out` with a weights suffix (.pt, .pth, .bin, .safetensors) asks for baked weights and falls
    back to `OUT.pt2` + `OUT.onnx` when weights cannot carry the mask; `out` ending in .pt2 or
    .onnx asks for the program (both files are written, named from its stem).

    Args:
        model_name: a zoo name or user factory string.
        mask_path: a mask file made for this model's weights.
        out: the file to write (see above).
        weights: the weights file the mask was made for (default: bundled/cached).
        check_batch: random images of the model's input shape on which every written file is
            compared with the hook-pruned model (max |diff| ≤ 1e-5; an ONNX file above that only
            when within float32 rounding of outputs that large, said in its check's `note`;
            else the file is not kept).
        images: `(mask, preprocessing) -> batch or None`: the check batch to use instead (the
            CLI gives the images of the run the mask came from); see `load_for_mask`.

    Raises:
        MaskError: an unreadable mask, one for another model, weights or layout, or a bad `out`.
        ExportRefused: torch.export or the ONNX exporter refuses the model (for ONNX, the `.pt2`
            has been written and the message says so).
        ZooError: the model or weights cannot be loaded.
    """
    out = Path(out).expanduser()
    _check_out(out, WEIGHT_SUFFIXES + PROGRAM_SUFFIXES, mask_path=mask_path, weights=weights)
    pt2, onnx_path = out.with_suffix(".pt2"), out.with_suffix(".onnx")
    for p in (pt2, onnx_path):
        _check_out(p, PROGRAM_SUFFIXES, mask_path=mask_path, weights=weights)
    loaded, mask, example = load_for_mask(
        model_name, mask_path, weights=weights, check_batch=check_batch, images=images
    )
    model = loaded.module
    if out.suffix.lower() in WEIGHT_SUFFIXES:
        why_not = bakeable(model, mask)
        if why_not is None:
            baked = bake_loaded(loaded, mask, example, out)
            reason = "every masked channel is made or read only by conv/BN/linear weights"
            return AppliedMask(loaded.spec.name, loaded.weights_source, mask, baked, (), reason)
        reason = f"weights alone cannot carry this mask ({why_not})"
    else:
        reason = f"`out=` {out.name} asks for a program that carries the mask"
    with torch.no_grad(), apply_mask(model, mask, verify=False):
        expected = model(example)
    program = export_program(model, mask, example, keep_size=loaded.spec.pp.size is None)
    with atomic_path(pt2) as tmp:  # kept only once loaded back and equal to the hooked model
        torch.export.save(program, str(tmp))
        diff = check_program(tmp, example, expected)
        _require_equal(diff, "the torch.export program")
    checks = [ProgramCheck(pt2, "torch.export", diff)]
    skipped = onnx_available()
    if skipped is None:
        try:
            onnx_check = write_onnx(program, onnx_path, example, expected)
        except ExportRefused as exc:
            raise ExportRefused(f"{exc}; {pt2} was written (torch.export), no ONNX file") from exc
        try:
            onnx_check = _onnx_within_rounding(onnx_check, model, mask, example, expected)
        except ExportRefused as exc:
            onnx_path.unlink(missing_ok=True)
            raise ExportRefused(f"{exc}; {pt2} was written (torch.export), no ONNX file") from None
        checks.append(onnx_check)
    return AppliedMask(loaded.spec.name, loaded.weights_source, mask, None, tuple(checks), reason, skipped)


def _require_equal(diff: float, what: str) -> None:
    if not diff <= EXACT_TOLERANCE:
        raise ExportRefused(f"{what} differs from the hook-pruned model by {diff:.3g} (> {EXACT_TOLERANCE:g})")


def _onnx_within_rounding(
    check: ProgramCheck, model: torch.nn.Module, mask: Mask, example: torch.Tensor, expected: torch.Tensor
) -> ProgramCheck:
    """The ONNX check, held to max |diff| ≤ 1e-5 absolute, as the program is.

    onnxruntime's kernels add in another order than torch's, so on large outputs the two float32
    results differ by float32 rounding alone: random-init resnet50's logits reach ~110, where one
    float32 step is 7.6e-6 and torch's own output is 3.4e-5 from the same model in float64
    (docs/results.md, "From a circuit to a deployed model"). Above 1e-5 the file is kept only when
    the difference is within twice that rounding of the hook-pruned model itself (each runtime
    at most that far from the exact result), and the check says so; otherwise it is refused.
    """
    if check.max_abs_diff <= EXACT_TOLERANCE:
        return check
    own = float32_error(model, mask, example, expected)
    peak = float(expected.abs().max())
    if own is None or check.max_abs_diff > EXACT_TOLERANCE + 2 * own:
        why = (
            "the model cannot run in float64 to tell rounding from error"
            if own is None
            else f"more than float32 rounding: the hook-pruned model itself is {own:.2g} from float64"
        )
        raise ExportRefused(
            f"the ONNX model differs from the hook-pruned model by {check.max_abs_diff:.3g} (> {EXACT_TOLERANCE:g}; {why})"
        )
    note = (
        f"above {EXACT_TOLERANCE:g}: float32 rounding on outputs up to {peak:.3g} (the hook-pruned model itself is "
        f"{own:.2g} from float64; onnxruntime adds in another order); the .pt2 is the exact one"
    )
    return dataclasses.replace(check, note=note)
