"""HTML pages of the catalog browser (Jinja2 templates, autoescaped) and the one-file report.

`Pages` renders each page from the plain views of `circuits.web.data`; links and image sources
come from two small strategies: in the server they are URLs (`/neuron/...`, `/patch/...png`), in
a report they are anchors within the page and `data:` URIs, so the report needs no network.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import urllib.parse
from collections.abc import Callable
from importlib import resources

import jinja2

from catalog import media
from circuits.web import data
from circuits.web.charts import effect_rows, interventions_svg
from circuits.web.examples import EXAMPLES
from circuits.web.graph import circuit_svg, heatmap_svg, kept_edges, node_label
from circuits.web.home import HomeView

__all__ = ["Pages", "parse_min_score", "report_html", "script", "stylesheet"]


def stylesheet() -> str:
    """The browser's CSS (served at /static/style.css, inlined into reports)."""
    return resources.files("circuits.web").joinpath("static/style.css").read_text(encoding="utf-8")


def script() -> str:
    """The graph's slider script (served at /static/graph.js, inlined into reports)."""
    return resources.files("circuits.web").joinpath("static/graph.js").read_text(encoding="utf-8")


def parse_min_score(text: str | None) -> tuple[float | None, str | None]:
    """The `?min_score=` filter: (threshold or None, a note for the page when the text is not a number)."""
    if text is None or not text.strip():
        return None, None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        return None, f"min_score {text[:40]!r} is not a number: all edges are shown"
    return value, None


def _environment() -> jinja2.Environment:
    folder = resources.files("circuits.web").joinpath("templates")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    return env


def _data_uri(image: bytes) -> str:
    mime = media.image_mime(image) or "image/png"  # patches are WebP now, older catalogs hold PNG
    return f"data:{mime};base64," + base64.b64encode(image).decode("ascii")


def _quote(name: str) -> str:
    return urllib.parse.quote(str(name), safe="")


def _neuron_links(view: data.CircuitView) -> Callable[[data.Node], str]:
    """A circuit's node -> the address of its neuron page."""
    return lambda n: data.neuron_href(view.model, n.layer, n.channel)


def _anchor(n: data.Node) -> str:
    return f"n-{n.layer}-{n.channel}".replace(" ", "_")


class Pages:
    """Renders the browser's pages for one catalog.

    Args:
        catalog_name: how the catalog is named in the header (its path or URL).
        report: render for a self-contained report (anchors and data: URIs, inline CSS).
    """

    def __init__(self, catalog_name: str, *, report: bool = False, schema=None):
        self.catalog_name = catalog_name
        self.report = report
        self.schema = schema  # () -> list[data.SchemaTable], listed on the SQL page
        self.env = _environment()

    def _render(self, template: str, **context) -> str:
        base = dict(
            catalog_name=self.catalog_name, report=self.report, inline_css=stylesheet() if self.report else None
        )
        return self.env.get_template(template).render(**base, **context)

    def _circuit_context(self, view: data.CircuitView, min_score_text: str | None = None) -> dict:
        if self.report:

            def href(n: data.Node) -> str:
                return f"#{_anchor(n)}" if n.in_circuit else "#graph"

            def patch_src(p: media.PatchRow) -> str:
                assert p.png is not None, "a report needs the patch bytes (circuit_view(with_png=True))"
                return _data_uri(p.png)

            def heat_src(p: media.PatchRow) -> str:
                assert p.heatmap is not None, "a report needs the heat-map bytes (circuit_view(with_png=True))"
                return _data_uri(p.heatmap)

            def ref_src(p: media.PatchRow) -> str:
                assert p.png is not None, "a report needs the patch bytes (circuit_view(with_png=True))"
                return _data_uri(p.png)

            def fv_src(f) -> str:
                assert f.png is not None, "a report needs the picture bytes (circuit_view(with_png=True))"
                return _data_uri(f.png)
        else:

            def href(n: data.Node) -> str:
                return data.neuron_href(view.model, n.layer, n.channel)

            def patch_src(p: media.PatchRow) -> str:
                return f"/patch/{p.run_id}/{p.neuron_id}/{p.rank}.png"

            def heat_src(p: media.PatchRow) -> str:
                return f"/heat/{p.run_id}/{p.neuron_id}/{p.rank}.png"

            def fv_src(f) -> str:
                return f"/featurevis/{f.run_id}/{f.neuron_id}.png"

            def ref_src(p: media.PatchRow) -> str:
                return f"/refpatch/{p.run_id}/{p.neuron_id}/{p.rank}.png"

        min_score, note = parse_min_score(None if self.report else min_score_text)
        cid = view.details.circuit.id
        fixed = view.details.circuit.fixed or {}
        effects = effect_rows(view.details.interventions)
        return dict(
            view=view,
            svg=circuit_svg(view, href, min_score=min_score),
            href=href,
            anchor=_anchor,
            patch_src=patch_src,
            heat_src=heat_src,
            fv_src=fv_src,
            ref_src=ref_src,
            label=node_label,
            node_of={n.neuron_id: n for n in view.nodes},
            kept=kept_edges(view, min_score),
            top_score=max((s for _, _, s in view.edges), default=0.0) or 1.0,
            min_score=min_score,
            min_score_text="" if min_score is None else (min_score_text or "").strip(),
            score_note=note,
            filter_action=f"/circuit/{cid}",
            model_href=f"/model/{_quote(view.model)}",
            concept_href=f"/concept/{_quote(view.details.run.concept)}",
            permalink=f"/circuit/{cid}",
            anchors=", ".join(f"{layer} ({', '.join(map(str, chans))})" for layer, chans in fixed.items()),
            description=view.description,
            effects=effects,
            chart=interventions_svg(effects) if effects else "",
            script=script(),
        )

    def home(self, view: HomeView, title: str | None = None) -> str:
        """The catalog's home page (or a model's or concept's page: the same tables, filtered)."""
        return self._render("home.html", title=title or "catalog", heading=title, view=view, quote=_quote)

    def circuit(self, view: data.CircuitView, min_score: str | None = None) -> str:
        """A circuit's page; `min_score` is the page's edge filter as typed (not a number: a note)."""
        title = f"circuit {view.details.circuit.id} ({view.details.run.concept})"
        return self._render("circuit.html", title=title, **self._circuit_context(view, min_score))

    def neuron(self, view: data.NeuronView) -> str:
        """A neuron's page."""

        def link(layer: str, channel: int) -> str:
            return data.neuron_href(view.model, layer, channel)

        return self._render(
            "neuron.html",
            title=data.neuron_id_text(view.model, view.layer, view.channel),
            view=view,
            link=link,
            anchor_id=f"n-{view.layer}-{view.channel}",
        )

    def compare(self, view: data.CompareView) -> str:
        """Circuits side by side with the overlap heat-map."""
        graphs = [(c, circuit_svg(c, _neuron_links(c), shared=view.shared)) for c in view.circuits]
        heat = heatmap_svg(list(view.labels), view.jaccard, view.shared_counts)
        return self._render("compare.html", title="compare", view=view, graphs=graphs, heatmap=heat)

    def sql(self, query: str, result=None, error: str | None = None) -> str:
        """The SQL box, with a result table or an error."""
        schema = self.schema() if self.schema is not None else []
        return self._render(
            "sql.html", title="SQL", query=query, result=result, error=error, examples=EXAMPLES, schema=schema
        )

    def images(self, sha: str, rows: list[media.ThumbRow]) -> str:
        """An image set's thumbnails."""
        return self._render("images.html", title=f"image set {sha[:12]}", sha=sha, rows=rows)

    def error(self, title: str, message: str) -> str:
        """An error page."""
        return self._render("error.html", title=title, message=message)

    def report_page(self, view: data.CircuitView) -> str:
        """The circuit page as one self-contained document."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        title = f"circuit {view.details.circuit.id} ({view.details.run.concept}) · report {stamp}"
        return self._render("circuit.html", title=title, **self._circuit_context(view))


def report_html(cat, circuit: str | int, model: str | None = None) -> tuple[int, str]:
    """A circuit's page as one self-contained HTML document (inline SVG and CSS, data: images).

    Args:
        cat: an open catalog (read-only is enough).
        circuit: circuit id, or a concept name (its newest circuit).
        model: the model, when the concept has circuits on several models.

    Returns:
        (circuit id, the HTML text).

    Raises:
        NotFound, CircuitsError: see `queries.listing.resolve_circuit`.
    """
    from queries.listing import resolve_circuit

    with cat.session() as s:
        circuit_id = resolve_circuit(s, circuit, model).circuit_id
        view = data.circuit_view(s, circuit_id, with_png=True, db=cat.display)
    return circuit_id, Pages(cat.display, report=True).report_page(view)
