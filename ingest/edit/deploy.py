"""`circuits apply` as a library call: a deployable pruned model for any mask on any model.

Where the mask can be baked exactly into weights (`ingest.edit.bake_plan`), a state dict is
written, as before. Where it cannot (a channel of a residual stream, an edge mask) the mask must
travel with the model: a `torch.export` program (`.pt2`, loads with only torch) and, with the
`[export]` extra, an ONNX file checked with onnxruntime (`ingest.edit.masked_export`). Every file
is loaded back and compared with the hook-pruned model on a check batch before it is kept.
"""

from __future__ import annotations

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
            compared with the hook-pruned model (max |diff| ≤ 1e-5, for ONNX relative to the
            largest output when that exceeds 1; else the file is not kept).
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
        # onnxruntime's kernels round differently from torch's: float32 rounding grows with the
        # outputs' size (random-init resnet50 logits reach ~110, where torch itself is 4e-5 from
        # float64), so the ONNX check is 1e-5 relative to the largest output, at least 1e-5 absolute.
        scale = max(1.0, float(expected.abs().max()))
        try:
            _require_equal(onnx_check.max_abs_diff, "the ONNX model", scale)
        except ExportRefused as exc:
            onnx_path.unlink(missing_ok=True)
            raise ExportRefused(f"{exc}; {pt2} was written (torch.export), no ONNX file") from None
        checks.append(onnx_check)
    return AppliedMask(loaded.spec.name, loaded.weights_source, mask, None, tuple(checks), reason, skipped)


def _require_equal(diff: float, what: str, scale: float = 1.0) -> None:
    if not diff <= EXACT_TOLERANCE * scale:
        limit = f"{EXACT_TOLERANCE:g}" + (f" × the largest output, {scale:.3g}" if scale > 1 else "")
        raise ExportRefused(f"{what} differs from the hook-pruned model by {diff:.3g} (> {limit})")
