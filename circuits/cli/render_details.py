"""A circuit's details (`circuits show`) as text or plain data; generic row rendering lives in
`circuits.cli.render`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from circuits.cli.render import plain, format_value, render_table

if TYPE_CHECKING:
    from queries.listing import CircuitDetails

__all__ = ["details_dict", "details_neuron_rows", "details_text"]


# ---------------------------------------------------------------- `circuits show`


def details_neuron_rows(details: CircuitDetails) -> list[dict[str, object]]:
    """One dict per neuron of a `circuits show` circuit: layer, channel."""
    c = details.circuit
    return [{"layer": name, "channel": ch} for name, chans in zip(c.layer_names, c.channels) for ch in chans]


def details_dict(details: CircuitDetails) -> dict[str, object]:
    """A circuit's details as plain data (channels per layer, interventions with evaluations)."""
    c, r = details.circuit, details.run
    return {
        "circuit": c.id,
        "run": r.id,
        "model": r.model,
        "weights_sha256": r.weights_sha256,
        "concept": r.concept,
        "status": r.status,
        "n_images": r.n_images,
        "device": r.device,
        "k": list(c.k),
        "sweeps": c.sweeps,
        "converged": c.converged,
        "objective": c.objective,
        "objective_history": list(c.objective_history),
        "fixed": c.fixed,
        "created_at": c.created_at,
        "layers": [
            {"layer": n, "width": w, "k": len(ch), "channels": list(ch)}
            for n, w, ch in zip(c.layer_names, c.widths, c.channels)
        ],
        "interventions": [
            {
                "id": iv.id,
                "kind": iv.kind,
                "params": iv.params,
                "edge_fraction": iv.edge_fraction,
                "baseline_edge_fraction": iv.baseline_edge_fraction,
                "evaluations": [asdict(e) for e in iv.evaluations],
            }
            for iv in details.interventions
        ],
    }


def details_text(details: CircuitDetails) -> str:
    """A circuit's details as readable multi-line text for the terminal."""
    c, r = details.circuit, details.run
    lines = [
        f"circuit {c.id}: concept {r.concept} on {r.model} (weights {r.weights_sha256[:12]})",
        f"run {r.id}: {r.status}, {r.n_images} images, {len(r.layer_names)} layers, device {r.device}, "
        f"{format_value(r.seconds)} s",
        f"search: k={','.join(str(x) for x in c.k)}, {c.sweeps} sweeps, "
        f"{'converged' if c.converged else 'NOT converged'}, objective {format_value(c.objective)} "
        f"(initial {format_value(c.objective_history[0]) if c.objective_history else '?'})",
    ]
    if c.fixed:
        lines.append("fixed: " + "; ".join(f"{k} {v}" for k, v in c.fixed.items()))
    lines += ["", "neurons per layer:"]
    rows = [
        {"layer": n, "width": w, "k": len(ch), "channels": " ".join(str(x) for x in ch)}
        for n, w, ch in zip(c.layer_names, c.widths, c.channels)
    ]
    lines.append(render_table(rows))
    if not details.interventions:
        lines += ["", f"no interventions yet: circuits ablate {c.id} --kind circuit --dataset catfish:NAME"]
        return "\n".join(lines)
    lines += ["", "interventions and evaluations:"]
    rows = [
        {
            "intervention": iv.id,
            "kind": iv.kind,
            "edges_cut": iv.edge_fraction,
            "image_set": e.image_set,
            "metric": e.metric,
            "clean": e.clean_value,
            "pruned": e.value,
            "random": e.baseline_value,
        }
        for iv in details.interventions
        for e in iv.evaluations
    ]
    bare = [iv.id for iv in details.interventions if not iv.evaluations]
    lines.append(render_table(rows))
    if bare:
        lines.append(f"(interventions without evaluations: {', '.join(map(str, bare))})")
    return "\n".join(lines)
