"""Plan how to bake a circuit-pruning mask into a copy of a model's weights, exactly.

Hooks zero channel c of a module M's output. Weights can do the same, bit for bit, in two ways,
and this module proves which one holds by reading the model's graph (torch.fx), never by trying:

* **producer route** — follow channel c of M's output back through channel-wise ops that keep a
  zero a zero (ReLU, max/avg pooling, dropout, identity), through `torch.cat` along channels (an
  inception block's branches) and through `+` (a residual sum: *both* addends must be zeroed, e.g.
  a ResNet block's bn3 and its downsample BN) to the Conv/BN/Linear that makes it. Setting that
  layer's weight and bias of channel c to 0 makes the channel exactly 0 for any finite input.
  Every value on the way must feed nothing else, or the edit would change other channels.
  A channel that reaches M's own input (an identity skip path) cannot be zeroed this way.
* **consumer route** — follow every use of M's output forward through the same zero-keeping ops
  (and `flatten` after a 1×1 adaptive pool) to the convolutions/linear layers that read it, and zero
  their weights *from* input channel c: they then ignore channel c, which equals reading a zero.
  M's own output still shows the channel; nothing downstream reads it. This covers ResNet stages,
  whose last block adds the block input back in (no producer route).

Anything else (an addend that is the module input and also feeds a consumer via a sum, a
BatchNorm without affine weights, an op the graph does not show) is refused with the reason.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from catalog.mask_file import Mask, MaskError
from catalog.vocab import MaskKind
from ingest.edit.bake_edits import ZERO_KEEPING_MODULES, Edit, NotBakeable

ZERO_KEEPING_FUNCTIONS = {
    F.relu,
    F.relu_,
    torch.relu,
    torch.relu_,
    F.relu6,
    F.leaky_relu,
    F.gelu,
    F.silu,
    torch.tanh,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    F.dropout,
    F.dropout2d,
}
ZERO_KEEPING_METHODS = {"relu", "relu_", "tanh", "contiguous", "clone"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
CONVS = (nn.Conv2d,)  # not ConvTranspose2d: its weight is laid out [in, out]
BATCHNORMS = (nn.BatchNorm2d,)


class NotExact(Exception):
    """Internal: one route cannot zero a channel exactly; the message says why."""


@dataclass(frozen=True)
class BakePlan:
    """The weight edits that make a plain model behave as the mask's hooks do."""

    edits: tuple[Edit, ...]
    routes: dict[str, str]  # module path -> "producer" | "consumer" | "transformer" (ingest.edit.token_bake)

    def params(self) -> list[str]:
        """The state-dict entries the plan edits, sorted."""
        return sorted({e.param for e in self.edits})


class _Tracer(fx.Tracer):
    """Names call nodes by their dotted path in the whole model, and keeps `leaves` (masked
    modules, the hook sites) as single call nodes."""

    def __init__(self, model: nn.Module, leaves: Iterable[str]) -> None:
        super().__init__()
        self.leaves = set(leaves)
        self.paths = {m: name for name, m in model.named_modules()}

    def path_of_module(self, mod: nn.Module) -> str:
        # a traced submodule may call modules it does not own (e.g. convs kept in a tuple and
        # registered on the parent), so paths come from the whole model
        if mod not in self.paths:
            raise NotExact(f"it calls a {type(mod).__name__} that is not a submodule of the model")
        return self.paths[mod]

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)


# What symbolic tracing raises on a forward that depends on tensor values (control flow, round()
# of a shape, ...): such a forward has no fixed graph to reason about.
TRACE_FAILURES = (fx.proxy.TraceError, TypeError, NotExact)


def _trace(model: nn.Module, path: str, leaves: Iterable[str]) -> fx.Graph:
    """The graph of `model.get_submodule(path)` (the whole model for path ""), call nodes named by
    their path in the whole model."""
    try:
        return _Tracer(model, leaves).trace(model.get_submodule(path))
    except TRACE_FAILURES as exc:
        raise NotExact(f"the forward of {path or 'the model'} cannot be traced as a graph ({exc})") from None


def _opaque_children(model: nn.Module, path: str) -> list[str]:
    """Top-level modules (other than `path`'s ancestors) whose forward cannot be traced; the whole
    model's graph keeps them as single nodes, so they only matter if they read `path`."""
    opaque = []
    for name, child in model.named_children():
        if path == name or path.startswith(f"{name}."):
            continue
        try:
            _Tracer(model, ()).trace(child)
        except TRACE_FAILURES:
            opaque.append(name)
    return opaque


def _target(node: fx.Node) -> str:
    """The dotted module path a call_module node calls (fx keeps it as a str for that op)."""
    assert isinstance(node.target, str), f"call_module target {node.target!r} is not a module path"
    return node.target


def _cat_parts(node: fx.Node) -> Sequence[fx.node.Argument]:
    """The concatenated operands of a node `_is_cat` accepted (a list or tuple)."""
    parts = node.args[0]
    assert isinstance(parts, (list, tuple)), "_is_cat accepts only a list/tuple of operands"
    return parts


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    if node.op == "placeholder":
        return "the module's input"
    if node.op == "output":
        return "the model's output"
    return getattr(node.target, "__name__", str(node.target))


class _Scope:
    """One traced graph and how its module targets map to the model's dotted paths."""

    def __init__(self, graph: fx.Graph, root: nn.Module, aliases: dict[int, int]) -> None:
        self.graph, self.root, self.aliases = graph, root, aliases
        self.calls: dict[str, int] = {}
        for n in graph.nodes:
            if n.op == "call_module":
                self.calls[_target(n)] = self.calls.get(_target(n), 0) + 1

    def module(self, node: fx.Node) -> nn.Module:
        return self.root.get_submodule(_target(node))

    def is_zero_keeping(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(self.module(node), ZERO_KEEPING_MODULES)
        if node.op == "call_function":
            return node.target in ZERO_KEEPING_FUNCTIONS
        return node.op == "call_method" and node.target in ZERO_KEEPING_METHODS

    def owned(self, node: fx.Node) -> str:
        """The dotted path of a parameterised module that may be edited (used once, not shared)."""
        path = _target(node)
        if self.calls[path] != 1:
            raise NotExact(f"{path} is called {self.calls[path]} times in one forward pass")
        if self.aliases.get(id(self.module(node)), 1) != 1:
            raise NotExact(f"{path} is shared with another part of the model")
        return path

    def width(self, node: fx.node.Argument) -> int | None:
        """The channel count of a node's output, read from the layers that make it (None for a
        constant operand)."""
        if not isinstance(node, fx.Node):
            return None
        if node.op == "call_module":
            m = self.module(node)
            if isinstance(m, CONVS):
                return m.out_channels
            if isinstance(m, nn.Linear):
                return m.out_features
            if isinstance(m, BATCHNORMS):
                return m.num_features
        if _is_cat(node):
            parts = [self.width(a) for a in _cat_parts(node)]
            known = [p for p in parts if p is not None]
            return None if len(known) != len(parts) else sum(known)
        if self.is_zero_keeping(node) or _is_add(node):
            return self.width(node.args[0]) if isinstance(node.args[0], fx.Node) else None
        return None


def _is_cat(node: fx.Node) -> bool:
    if node.op != "call_function" or node.target is not torch.cat:
        return False
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return bool(dim == 1) and isinstance(node.args[0], (list, tuple))


def _is_add(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in ADD_FUNCTIONS and not node.kwargs) or (
        node.op == "call_method" and node.target in ("add", "add_") and not node.kwargs
    )


def _producer(scope: _Scope, node: fx.Node, c: int) -> list[Edit]:
    """Edits that make channel c of `node` exactly zero, touching nothing else."""
    where = _describe(node)
    if node.op == "call_module":
        m = scope.module(node)
        if isinstance(m, CONVS + (nn.Linear,)) or (isinstance(m, BATCHNORMS) and m.affine):
            path = scope.owned(node)
            edits = [Edit(f"{path}.weight", 0, c)]
            return edits + ([Edit(f"{path}.bias", 0, c)] if m.bias is not None else [])
        if isinstance(m, BATCHNORMS):
            raise NotExact(f"{where} is a BatchNorm without affine weights")
        if not isinstance(m, ZERO_KEEPING_MODULES):
            raise NotExact(f"channel {c} is made by {where} ({type(m).__name__}), which is not a conv/BN/linear")
    if node.op == "placeholder":
        raise NotExact(f"channel {c} comes straight from the module's input (an identity/skip path)")
    if scope.is_zero_keeping(node):
        return _producer_arg(scope, node, node.args[0], c)
    if _is_cat(node):
        offset = 0
        for part in _cat_parts(node):
            w = scope.width(part)
            if w is None:
                what = _describe(part) if isinstance(part, fx.Node) else "a constant"
                raise NotExact(f"cannot tell the channel count of {what} in a concatenation")
            if c < offset + w:
                return _producer_arg(scope, node, part, c - offset)
            offset += w
        raise NotExact(f"channel {c} is beyond the {offset} channels of the concatenation")
    if _is_add(node):
        return [e for arg in node.args[:2] for e in _producer_arg(scope, node, arg, c)]
    raise NotExact(f"channel {c} is made by {where}, an operation that editing weights cannot zero")


def _producer_arg(scope: _Scope, user: fx.Node, arg: object, c: int) -> list[Edit]:
    if not isinstance(arg, fx.Node):
        raise NotExact(f"{_describe(user)} has a constant operand")
    others = [u for u in arg.users if u is not user]
    if others:
        if arg.op == "placeholder":
            raise NotExact(f"channel {c} comes straight from the module's input (an identity/skip path)")
        raise NotExact(
            f"{_describe(arg)} also feeds {_describe(others[0])}, so zeroing it "
            "would change more than this module's output"
        )
    return _producer(scope, arg, c)


def _consumers(scope: _Scope, node: fx.Node, c: int, state: str = "map") -> list[Edit]:
    """Edits that make every reader of channel c of `node` ignore it.

    `state` is what channel c is at `node`: "map" (a feature map), "map1" (a 1×1 map after an
    adaptive pool, so flatten puts it at feature c) or "flat" (feature c of a vector).
    """
    edits: list[Edit] = []
    for user in node.users:
        where = _describe(user)
        if _is_add(user):
            raise NotExact(f"its output is summed with another value in {where} (a skip path)")
        if user.args[:1] != (node,):
            raise NotExact(f"its output is read by {where} as other than the first operand")
        m = scope.module(user) if user.op == "call_module" else None
        if isinstance(m, CONVS) and state != "flat":
            out_per_group, in_per_group = m.out_channels // m.groups, m.in_channels // m.groups
            group, col = divmod(c, in_per_group)
            rows = None if m.groups == 1 else (group * out_per_group, (group + 1) * out_per_group)
            edits.append(Edit(f"{scope.owned(user)}.weight", 1, col, rows))
        elif isinstance(m, nn.Linear) and state == "flat":
            edits.append(Edit(f"{scope.owned(user)}.weight", 1, c))
        elif _is_flatten(scope, user) and state == "map1":
            edits += _consumers(scope, user, c, "flat")
        elif scope.is_zero_keeping(user) and not (state == "flat" and "pool" in _op_name(scope, user)):
            edits += _consumers(scope, user, c, "map1" if _pools_to_one(scope, user) else state)
        else:
            raise NotExact(f"its output is read by {where}, which cannot be told to ignore channel {c}")
    return edits


def _op_name(scope: _Scope, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(scope.module(node)).__name__.lower()
    return getattr(node.target, "__name__", str(node.target)).lower()


def _is_flatten(scope: _Scope, node: fx.Node) -> bool:
    """flatten from dim 1 to the end: `torch.flatten(x, 1)`, `x.flatten(1)` or `nn.Flatten()`."""
    if node.op == "call_module":
        m = scope.module(node)
        return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1
    if (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    ):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return bool(start == 1) and bool(end == -1)
    return False


def _pools_to_one(scope: _Scope, node: fx.Node) -> bool:
    """True for an adaptive pool to a 1×1 map (then flatten puts channel c at feature c)."""
    if "adaptive" not in _op_name(scope, node):
        return False
    size: object
    if node.op == "call_module":
        size = scope.module(node).output_size
    else:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
    return bool(size == 1) or (isinstance(size, (tuple, list)) and all(s == 1 for s in size))


def require_circuit_kind(mask: Mask) -> None:
    """Raise NotBakeable for an edge mask: edge pruning needs two forward passes, not weights."""
    if mask.kind != MaskKind.circuit:
        assert mask.edge is not None, "Mask.__post_init__ requires an edge for an edge mask"
        raise NotBakeable(
            f"an {mask.kind} mask cannot be baked into weights: edge pruning recomputes {mask.edge.dst} "
            "from a second forward pass (`circuits apply` writes a program that carries the mask instead)"
        )


def plan_bake(model: nn.Module, mask: Mask) -> BakePlan:
    """Work out the exact weight edits for a circuit mask.

    Args:
        model: the model the mask was made for (its weights are not changed).
        mask: a circuit mask (edge masks are not bakeable: they need two forward passes).

    Returns:
        The edits and the route chosen per module (producer preferred).

    Raises:
        NotBakeable: an edge mask, or a module that cannot be baked exactly (the message names it
            and why each route fails).
        MaskError: a module's channel count differs from the mask's width.
    """
    require_circuit_kind(mask)
    aliases: dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        aliases[id(m)] = aliases.get(id(m), 0) + 1
    edits: list[Edit] = []
    routes: dict[str, str] = {}
    from ingest.edit.token_bake import token_edits  # transformer heads and MLP neurons

    for path, mm in mask.modules.items():
        token = token_edits(model, path, mm.channels, mm.width)
        if token is not None:
            edits += token
            routes[path] = "transformer"
            continue
        try:
            edits += _plan_producer(model, path, mm.channels, mm.width, aliases)
            routes[path] = "producer"
            continue
        except NotExact as exc:
            producer_error = str(exc)
        try:
            scope, calls = _model_scope(model, path, aliases)
            for node in calls:
                for c in mm.channels:
                    edits += _consumers(scope, node, c)
            routes[path] = "consumer"
        except NotExact as exc:
            raise NotBakeable(
                f"cannot bake {path} exactly: zeroing its own weights fails ({producer_error}); making its "
                f"readers ignore it fails ({exc}); `circuits apply` writes a program that carries the mask instead"
            ) from None
    return BakePlan(tuple(dict.fromkeys(edits)), routes)


def _model_scope(model: nn.Module, path: str, aliases: dict[int, int]) -> tuple[_Scope, list[fx.Node]]:
    """The whole model's graph with `path` kept as one node, and that module's call nodes."""
    scope = _Scope(_trace(model, "", [path, *_opaque_children(model, path)]), model, aliases)
    calls = [n for n in scope.graph.nodes if n.op == "call_module" and n.target == path]
    if not calls:
        raise NotExact(f"{path} is not called as one step of the model's forward pass")
    return scope, calls


def _plan_producer(model: nn.Module, path: str, channels, width: int, aliases: dict[int, int]) -> list[Edit]:
    module = model.get_submodule(path)
    if isinstance(module, CONVS + BATCHNORMS + (nn.Linear,) + ZERO_KEEPING_MODULES):
        # a leaf such as `features.2` (a ReLU): its producer lives in the parent's graph
        scope, outputs = _model_scope(model, path, aliases)
    else:
        scope = _Scope(_trace(model, path, ()), model, aliases)
        outputs = [n.args[0] for n in scope.graph.nodes if n.op == "output"]
        if len(outputs) != 1 or not isinstance(outputs[0], fx.Node):
            raise NotExact("its forward does not return one tensor")
    for out in outputs:
        w = scope.width(out)
        if w is not None and w != width:
            raise MaskError(f"{path} has {w} channels but the mask was made for a width of {width}")
    return [e for out in outputs for c in channels for e in _producer(scope, out, c)]


def apply_edits(state: dict[str, torch.Tensor], edits: Iterable[Edit]) -> None:
    """Zero the planned entries of a state dict in place."""
    for e in edits:
        t = state[e.param]
        if e.axis == 0:
            t[e.channel] = 0
        elif e.rows is None:
            t[:, e.channel] = 0
        else:
            t[e.rows[0] : e.rows[1], e.channel] = 0
