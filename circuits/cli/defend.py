"""`circuits defend`: the typographic-attack defence loop (a thin wrapper over `ingest.defence.defend`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuits.cli.options import DbOption, DeviceOption, FormatOption, OutputFormat, ThreadsOption, comma_list

app = typer.Typer()

# The zero-shot target (--classes: an image tower as a classifier, `ingest.defence.clip.clip_target`).
ClassesOpt = Annotated[
    str | None, typer.Option("--classes", help="Zero-shot: class names a,b,c (prompts 'a photo of a …').")
]
ImagesOpt = Annotated[
    str | None,
    typer.Option("--images", help="Zero-shot: folder with one subfolder per class (or one class with --label)."),
]
AttackImagesOpt = Annotated[
    str | None,
    typer.Option("--attack-images", help="Zero-shot: attack images made elsewhere, with written.csv (file,written)."),
]
LabelOpt = Annotated[str | None, typer.Option("--label", help="Zero-shot: the class of a flat --images folder.")]
ClassEmbeddingsOpt = Annotated[
    str | None,
    typer.Option("--class-embeddings", help="Zero-shot: (C, D) text embeddings file (.pt/.npy), one row per class."),
]
RandomEmbeddingsOpt = Annotated[
    bool, typer.Option("--random-embeddings", help="Zero-shot plumbing test: seeded random class embeddings.")
]


def _parse_ks(values: list[str]) -> tuple[int | tuple[int, ...], ...]:
    from catalog.sizes import parse_k

    return tuple(parse_k(text) for text in values)


def _seeds(text: str | None) -> tuple[int, ...]:
    from ingest.defence.defend import HOLDOUT_SEEDS, DefendError

    if text is None:
        return HOLDOUT_SEEDS
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise DefendError(f"--holdout-seeds takes seeds a,b,c or none, e.g. 21,31,41 (got {text!r})") from None


@app.command()
def defend(
    model: Annotated[str, typer.Argument(help="typo-mini, or an image tower (clip-rn50) with --classes.")],
    k: Annotated[
        list[str] | None,
        typer.Option("--k", help="Text-circuit size: neurons per layer, one value or one per layer; repeat to sweep."),
    ] = None,
    kinds: Annotated[
        str, typer.Option("--kinds", help="Pruning kinds to sweep: circuit, edge or circuit,edge.")
    ] = "circuit,edge",
    budget: Annotated[
        float, typer.Option("--budget", help="Clean accuracy the defence may cost (0.02 = 2 points).")
    ] = 0.02,
    target_cut: Annotated[
        float, typer.Option("--target-cut", help="Attack success should fall this many times.")
    ] = 5.0,
    search: Annotated[
        bool,
        typer.Option(
            "--search",
            help="Also beam-search a per-layer k (on images of another seed) within --max-edges and --budget.",
        ),
    ] = False,
    max_edges: Annotated[
        float, typer.Option("--max-edges", help="The search's edge budget (0.06 = 6% of edges).")
    ] = 0.06,
    keep: Annotated[
        str | None, typer.Option("--keep", help="typo-mini: classes whose clean accuracy counts (default all).")
    ] = None,
    classes: ClassesOpt = None,
    images: ImagesOpt = None,
    attack_images: AttackImagesOpt = None,
    label: LabelOpt = None,
    class_embeddings: ClassEmbeddingsOpt = None,
    random_embeddings: RandomEmbeddingsOpt = False,
    weights: Annotated[str | None, typer.Option("--weights", help="Local weights file (default: bundled).")] = None,
    layers: Annotated[str | None, typer.Option("--layers", help="CLA layers A,B,… (default: the model's).")] = None,
    text_set: Annotated[
        str,
        typer.Option(
            "--text-set",
            help="typo-mini: the text concept: contrast (class names written on images, against the same images without them), typo:text:names (the names alone) or typo:text (also other words).",
        ),
    ] = "contrast",
    n_text: Annotated[int, typer.Option("--n-text", help="Text-concept images for CLA.")] = 192,
    n_attack: Annotated[int, typer.Option("--n-attack", help="typo-mini: attack images.")] = 240,
    n_clean: Annotated[int, typer.Option("--n-clean", help="typo-mini: clean images per class.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every rendered image and written word.")] = 1,
    baseline_seed: Annotated[int, typer.Option("--baseline-seed", help="Seed of the first random circuit.")] = 0,
    baselines: Annotated[
        int,
        typer.Option(
            "--baselines", help="Random circuits of the same shape per row (their mean and spread are reported)."
        ),
    ] = 5,
    holdout_seeds: Annotated[
        str | None,
        typer.Option(
            "--holdout-seeds",
            help="typo-mini: seeds of held-out attack and clean images to measure the recommended circuit on, a,b,c (default 21,31,41; 'none' for none).",
        ),
    ] = None,
    search_scale: Annotated[
        int,
        typer.Option(
            "--search-scale",
            help="typo-mini: the k search measures on this many times --n-attack attack images (of another seed).",
        ),
    ] = 3,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write the attack-success vs clean-accuracy plot (PNG).")
    ] = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    fmt: FormatOption = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """Find the text circuit, prune it at several sizes and ways, measure the typographic attack
    beside random circuits of the same shape, store everything, and recommend a defence.

    Without --classes the model must be typo-mini or typo-vit (Typographic-synth images are
    rendered). On a model with attention heads (typo-vit) it prints one table instead: CLA's text
    circuit (k heads per head layer, per --k) beside head ablation in the manner of Dyslexify and
    random heads, the same number of heads removed, zero- and mean-ablated, on the held-out seeds.
    With --classes the model is an image tower used as a zero-shot classifier, attacked on --images.

    Like ingest, it creates a missing catalog file and holds the catalog only to read and write,
    so `circuits sql` works during a run; when stderr is not a terminal it prints a progress line
    with an ETA at most every 10 s.
    """
    from catalog.engine import open_catalog
    from circuits.cli.progress_log import command_progress
    from circuits.cli.render import render
    from circuits.cli.validate import catalog_files, check_output_path, model_file, new_catalog_guard
    from ingest.defence.defend import DEFAULT_KS, DefendConfig, DefendError, typo_target
    from ingest.defence.defend import defend as run_defend

    if plot is not None:  # before any work: nothing is stored when the plot cannot be written
        check_output_path(
            plot,
            suffixes=(".png", ".svg", ".pdf"),
            inputs=(*catalog_files(db), weights, class_embeddings, model_file(model)),
            folders=(images, attack_images),
            what="--plot",
        )

    config = DefendConfig(
        model=model,
        weights=weights,
        layers=tuple(comma_list(layers)) if layers else None,
        ks=_parse_ks(k) if k else DEFAULT_KS,
        kinds=tuple(comma_list(kinds)),
        baseline_seed=baseline_seed,
        n_baselines=baselines,
        budget=budget,
        target_cut=target_cut,
        device=device,
        search=search,
        max_edges=max_edges,
        threads=threads,
    )
    config.validate()
    if classes is not None:
        from ingest.defence.clip import clip_target

        if images is None:
            raise typer.BadParameter("--classes needs --images DIR (images to attack)")
        target = clip_target(
            model,
            comma_list(classes) or [],
            images,
            weights=weights,
            n_text=n_text,
            seed=seed,
            layers=config.layers,
            label=label,
            embeddings=class_embeddings,
            random_embeddings=random_embeddings,
            attack_images=attack_images,
        )
    else:
        from ingest.defence.defend import check_typo_model

        check_typo_model(model)
        target = typo_target(
            n_text=n_text,
            n_attack=n_attack,
            n_clean_per_class=n_clean,
            seed=seed,
            classes=comma_list(keep),
            text=text_set,
            search_scale=search_scale,
            holdout_seeds=_seeds(holdout_seeds),
        )
    from ingest.threads import configure

    configure(threads)  # the command's process: threads for the free CPUs (ingest.threads)
    heads = [] if classes is not None or target.plain_set is None else _head_layers(model, config.layers)
    if heads:  # a transformer: CLA's text circuit beside head ablation, one table
        if plot is not None or search:
            raise DefendError(
                f"{'--plot' if plot is not None else '--search'} belongs to the pruning sweep; a model with attention "
                "heads prints CLA's head circuit beside head ablation instead (--k sets the heads per head layer)"
            )
        _defend_heads(config, target, heads, fmt, db)
        return
    with new_catalog_guard(db):  # a catalog created here is removed again if nothing was stored
        cat = open_catalog(db, create=True, wait=None)  # a reader holding a DuckDB file: wait for it
        # A bar draws on stdout: only with the table, so CSV and JSON stay parseable.
        with command_progress(fmt is OutputFormat.table) as update:
            report = run_defend(cat, config, target, progress=update)
    rows = [r.as_dict() for r in report.rows]
    typer.echo(render(rows, fmt.value))
    best = report.recommended
    if plot is not None:
        from queries.defence import plot_tradeoff

        idx = None if best is None else report.rows.index(best)
        path = plot_tradeoff(
            rows, plot, recommended=idx, budget=report.budget, title=f"{model}: typographic-attack defence"
        )
        typer.echo(f"plot: {path}", err=fmt is not OutputFormat.table)
    if fmt is not OutputFormat.table:
        return
    for step in report.search:
        typer.echo(
            f"search: k={','.join(map(str, step.k))}  attack success {100 * step.attack_success:.1f}%  "
            f"clean accuracy {100 * step.clean_accuracy:.1f}%  edges {100 * step.edge_fraction:.2f}% "
            "(search images)"
        )
    if best is None:
        typer.echo(f"no recommendation: {report.reason}")
        return
    typer.echo(
        f"recommended: circuit {best.circuit_id}, {best.kind} pruning"
        + ("" if best.pair is None else f" of pair {best.pair}")
        + f": attack success {100 * best.attack_success_clean:.1f}% → {100 * best.attack_success:.1f}% "
        f"(random circuits: {100 * best.attack_success_random:.1f} ± {100 * best.attack_success_random_sd:.1f}%), clean accuracy "
        f"{100 * best.clean_accuracy_clean:.1f}% → {100 * best.clean_accuracy:.1f}%, "
        f"{100 * best.edge_fraction:.2f}% of edges cut" + ("" if report.meets_target else " (target not met)")
    )
    typer.echo(f"  why: {report.reason}")
    for h in report.holdout:
        typer.echo(
            f"  held-out seed {h.seed}: attack success {100 * h.attack_success_clean:.1f}% → "
            f"{100 * h.attack_success:.1f}% ({h.cut:.2f}× lower; random circuits "
            f"{100 * h.attack_success_random:.1f} ± {100 * h.attack_success_random_sd:.1f}%), clean accuracy "
            f"{100 * h.clean_accuracy_clean:.1f}% → {100 * h.clean_accuracy:.1f}%"
        )
    holdout_cut = report.holdout_cut  # None without held-out seeds
    if holdout_cut is not None:
        typer.echo(
            f"  held-out mean: {holdout_cut:.2f}× lower attack success"
            + ("" if holdout_cut >= report.target_cut else " (target not met on held-out images)")
        )
    from queries.suggest import db_flag

    # every mask applies (weights where exact, else a program that carries it; see `circuits apply`)
    edge = "" if best.kind == "circuit" else f" --kind edge --pair {best.pair or 0}"
    out = "defended.pt" if best.kind == "circuit" else "defended.pt2"
    typer.echo(
        f"  apply it: circuits export {best.circuit_id}{edge} -o text.json{db_flag(db)} && "
        f"circuits apply {model} --mask text.json -o {out}"
    )


def _head_layers(model: str, layers: tuple[str, ...] | None) -> list[str]:
    from ingest.defence.head_compare import head_layers_of

    return head_layers_of(model, layers)


def _defend_heads(config, target, heads: list[str], fmt: OutputFormat, db) -> None:
    """`circuits defend` on a model with attention heads (`ingest.defence.head_compare`)."""
    from catalog.engine import open_catalog
    from circuits.cli.progress_log import command_progress
    from circuits.cli.render import render
    from circuits.cli.validate import new_catalog_guard
    from ingest.defence.head_compare import compare_heads

    with new_catalog_guard(db):
        cat = open_catalog(db, create=True, wait=None)
        with command_progress(fmt is OutputFormat.table) as update:
            result = compare_heads(cat, config, target, heads, progress=update)
    typer.echo(render([r.as_dict() for r in result.rows], fmt.value))
    if fmt is not OutputFormat.table:
        return
    seeds = ", ".join("reported" if s is None else str(s) for s in result.seeds)
    typer.echo(
        f"measured on held-out seeds {seeds} ({result.n_attack} attack + {result.n_clean} clean images each); "
        f"heads are block.head over the {len(result.layers)} head layers; CLA run {result.run_id}"
    )
    for line in result.verdicts:
        typer.echo(f"  {line}")
