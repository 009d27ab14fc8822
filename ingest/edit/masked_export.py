"""A masked model that carries its mask: for masks that weights alone cannot hold.

Baking (`ingest.edit.bake_plan`) zeroes weights, which is exact only where a masked channel is made
by, or read only by, a conv/BN/linear layer. A channel of a residual stream (EfficientNet's
`_blocks.14`, whose output adds the block input back in) has neither route. For those masks the
deployable artefact must do what the hooks do, so it is the hooked model itself, traced:

* `MaskedModel(model, mask)` is an `nn.Module` whose forward runs `model` with the mask's
  intervention applied (circuit pruning: the listed channels zeroed at each module; edge pruning:
  docs/method.md, "Interventions", as two full passes, one with the source channels zeroed). Its
  outputs are the hook-pruned model's.
* `export_program` traces it with `torch.export` (batch size free; image size free for models that
  keep image sizes): the mask becomes constants of the graph, and the program loads with
  `torch.export.load` in a process that has only torch.
* `write_onnx` converts that program to one self-contained ONNX file (torch.onnx, the `[export]`
  extra) and checks it with onnxruntime.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from catalog.atomic import atomic_path
from catalog.errors import CircuitsError
from catalog.mask_file import Mask
from catalog.vocab import MaskKind
from ingest.edit.prune import _as_tensor_output, _index, _zeroed, prune_circuit
from ingest.hooks import channel_dim, scoped_hooks

__all__ = [
    "ExportRefused",
    "MaskedModel",
    "ProgramCheck",
    "export_program",
    "float32_error",
    "onnx_available",
    "write_onnx",
]


class ExportRefused(CircuitsError):
    """torch.export or the ONNX exporter cannot convert the masked model (the message says where)."""


class MaskedModel(nn.Module):
    """`model` with `mask` applied on every forward pass (the same arithmetic as `apply_mask`).

    Args:
        model: the network (held, not copied; put it in eval mode first).
        mask: a circuit or edge mask made for it (check it with `ingest.edit.mask_apply.check`).
    """

    def __init__(self, model: nn.Module, mask: Mask) -> None:
        super().__init__()
        self.inner = model
        self.mask = mask

    def forward(self, x: torch.Tensor) -> Any:  # x: (B, C, H, W)
        if self.mask.kind == MaskKind.circuit:
            layers = list(self.mask.modules)
            with prune_circuit(self.inner, layers, [self.mask.modules[p].channels for p in layers]):
                return self.inner(x)
        with self._edge_cut() as cut:
            cut["phase"] = "corrupt"  # pass 1: the source channels zeroed; keep dst's output
            self.inner(x)
            cut["phase"] = "clean"  # pass 2: clean, dst's cut channels taken from pass 1
            return self.inner(x)

    @contextmanager
    def _edge_cut(self) -> Iterator[dict[str, Any]]:
        # Two full passes rather than `prune_edges`' nested pass stopped by an exception: torch.export
        # traces a module once per call and cannot follow a forward unwound half way.
        e = self.mask.edge
        assert e is not None, "an edge mask has an edge entry"
        state: dict[str, Any] = {"phase": "clean", "corrupted": None}

        def src_hook(_m, _inp, out):
            if state["phase"] == "corrupt":
                return _zeroed(_as_tensor_output(out, e.src), list(e.src_channels), e.src)
            return None

        def dst_hook(_m, _inp, out):
            out = _as_tensor_output(out, e.dst)
            if state["phase"] == "corrupt":
                state["corrupted"] = out
                return None
            dim = channel_dim(out, e.dst)
            idx = _index(list(e.dst_channels), out, dim, e.dst)
            return out.index_copy(dim, idx, state["corrupted"].index_select(dim, idx))

        try:
            with scoped_hooks(self.inner, {e.src: src_hook, e.dst: dst_hook}):
                yield state
        finally:
            state["corrupted"] = None


def _dynamic(example: torch.Tensor, keep_size: bool) -> tuple[dict[int, Any]]:
    auto = torch.export.Dim.AUTO  # free where the graph allows it, fixed (not an error) where not
    dims = {0: auto}
    if keep_size:
        dims.update({2: auto, 3: auto})
    return (dims,)


def export_program(
    model: nn.Module, mask: Mask, example: torch.Tensor, *, keep_size: bool = False
) -> torch.export.ExportedProgram:
    """Trace `MaskedModel(model, mask)` with torch.export on `example` (batch size left free).

    Args:
        model: the network, in eval mode, on the CPU.
        mask: a circuit or edge mask for it.
        example: an input batch `(B, C, H, W)`.
        keep_size: also leave H and W free (models that take images at their own size).

    Raises:
        ExportRefused: torch.export cannot trace the model (its message, first line).
    """
    wrapped = MaskedModel(model, mask).eval()
    try:
        with torch.no_grad():
            return torch.export.export(wrapped, (example,), dynamic_shapes=_dynamic(example, keep_size), strict=False)
    except CircuitsError:
        raise
    except Exception as exc:  # the exporter's own errors are many classes; say which and where
        raise ExportRefused(f"torch.export cannot trace the masked model: {_first_line(exc)}") from exc


def onnx_available() -> str | None:
    """None when the ONNX export can run here, else why not (the missing package and the extra)."""
    import importlib.util

    missing = [p for p in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(p) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install 'visual-circuit-catalog[export]')"
    return None


@dataclass(frozen=True)
class ProgramCheck:
    """A written file and its largest difference from the hook-pruned model on the check batch."""

    path: Path
    kind: str  # "torch.export" or "onnx"
    max_abs_diff: float
    note: str | None = None  # why a difference above 1e-5 was accepted (ONNX on large outputs)


def save_program(program: torch.export.ExportedProgram, out: Path) -> None:
    """`torch.export.save` to `out`, whole or not at all."""
    with atomic_path(out) as tmp:
        torch.export.save(program, str(tmp))


def check_program(path: Path, example: torch.Tensor, expected: torch.Tensor) -> float:
    """Load a saved program back (as a deployment would) and compare it on `example`."""
    loaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        got = loaded(example)
    return float((got - expected).abs().max())


def write_onnx(
    program: torch.export.ExportedProgram, out: Path, example: torch.Tensor, expected: torch.Tensor
) -> ProgramCheck:
    """Convert an exported program to one ONNX file (weights inside) and check it with onnxruntime.

    Raises:
        ExportRefused: the ONNX exporter refuses the graph (the op it names), or onnxruntime
            cannot load what it wrote.
    """
    import logging
    import warnings

    import onnxruntime as ort

    with atomic_path(out) as tmp:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                logging.getLogger("torch.onnx").setLevel(logging.ERROR)
                torch.onnx.export(program, (example,), str(tmp), dynamo=True, external_data=False, verbose=False)
        except Exception as exc:  # names the unsupported op in its message
            raise ExportRefused(f"the ONNX exporter refused the masked model: {_first_line(exc)}") from exc
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    return ProgramCheck(out, "onnx", float((torch.from_numpy(got) - expected).abs().max()))


def float32_error(model: nn.Module, mask: Mask, example: torch.Tensor, expected: torch.Tensor) -> float | None:
    """How far the hook-pruned model's own float32 output is from the same model in float64.

    Two float32 implementations of one network (torch and onnxruntime) differ by about this much
    when they add in different orders: it is the rounding of the outputs' size, not an error of
    the export. None when the model cannot run in float64 (e.g. it makes float32 tensors itself).

    Args:
        model: the network, in eval mode, on the CPU (not changed: a copy runs in float64).
        mask: the mask.
        example: the check batch.
        expected: the hook-pruned model's float32 output on it.
    """
    import copy

    try:
        twin = MaskedModel(copy.deepcopy(model).double(), mask).eval()
        with torch.no_grad():
            exact = twin(example.double())
    except Exception:  # any failure of a user's model in float64 means: no such bound here
        return None
    return float((expected.double() - exact).abs().max())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
