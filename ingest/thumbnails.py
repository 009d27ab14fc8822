"""Thumbnails for the catalog: each circuit neuron's top-activating example patches, and the
concept's example images, as small PNGs (stored by `catalog.media`).

A neuron's patches: over the run's concept images, the `top` images where the neuron's maximum
activation (over positions) is largest; each is cropped to the neuron's receptive field around
that maximum's position and resized to `size` pixels. The receptive field of a layer is measured,
not derived from the architecture: the support of the input gradient of one position of the
layer (all channels summed) on a real image, so it works for any model. Outputs without a spatial
grid (vectors, tokens) get the whole image.

    patches = neuron_patches(loaded, x, layers, channels)        # before the run's transaction
    store_thumbnails(session, run_id, concept_id, image_set_sha256, model_ref, patches, images)

`recompute_run_thumbnails` does the same for a stored run (its images are read again from their
recorded sources, or re-rendered for CatFish sets, and checked against their sha256s).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from sqlalchemy.orm import Session
from torch import nn

from catalog import media
from catalog.errors import CircuitsError

__all__ = [
    "NeuronPatches",
    "ThumbnailConfig",
    "ThumbnailError",
    "example_thumbnails",
    "neuron_patches",
    "png_thumbnail",
    "receptive_fields",
    "recompute_run_thumbnails",
    "store_thumbnails",
]

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class ThumbnailError(CircuitsError):
    """Thumbnails cannot be computed for a run as asked."""


@dataclass(frozen=True)
class ThumbnailConfig:
    """How many patches and how large (each PNG stays under `catalog.media.MAX_PNG_BYTES`)."""

    top: int = 4  # patches per neuron: enough to see what it responds to, small in the catalog
    size: int = 64  # patch side in pixels (Microscope-like small tiles)
    image_size: int = 64  # example-image thumbnail's longer side
    batch_size: int = 32  # images per forward pass (memory only)


@dataclass(frozen=True)
class NeuronPatches:
    """One neuron's computed patches: (image index, activation, box (x0, y0, x1, y1), png)."""

    layer: str
    channel: int
    patches: tuple[tuple[int, float, tuple[int, int, int, int], bytes], ...]


def png_thumbnail(pixels: np.ndarray, size: int) -> bytes:
    """Encode an RGB uint8 image (H, W, 3) as a PNG whose longer side is `size` pixels.

    Shrinks further if the PNG would exceed `catalog.media.MAX_PNG_BYTES`.
    """
    assert pixels.ndim == 3 and pixels.shape[-1] == 3 and pixels.dtype == np.uint8, pixels.shape
    h, w = pixels.shape[:2]
    side = size
    while True:
        scale = side / max(h, w)
        im = Image.fromarray(pixels).resize(
            (max(1, round(w * scale)), max(1, round(h * scale))),
            Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.NEAREST,
        )
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        data = buf.getvalue()
        if len(data) <= media.MAX_PNG_BYTES or side <= 8:
            return data
        side = side * 3 // 4


def _display_pixels(x: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None) -> np.ndarray:
    """Model inputs (N, C, H, W), C = 1 or 3, back to uint8 RGB (N, H, W, 3) by undoing the
    normalisation (None: the inputs were not normalised)."""
    x = x.detach().cpu()
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
        x = x * s + m
    rgb = x.clamp(0, 1).expand(-1, 3, -1, -1) if x.shape[1] == 1 else x.clamp(0, 1)
    return (rgb.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def _outputs(model: nn.Module, layers: Sequence[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Forward `x` and keep each layer's output (attached to the input's graph)."""
    from ingest.hooks import scoped_hooks

    out: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module, args, output):
            out[name] = output

        return hook

    with scoped_hooks(model, {name: keep(name) for name in layers}):
        model(x)
    missing = [n for n in layers if n not in out]
    if missing:
        raise ThumbnailError(f"layer(s) {', '.join(missing)} did not run in the forward pass")
    return out


def receptive_fields(model: nn.Module, layers: Sequence[str], x: torch.Tensor) -> dict[str, tuple[int, int] | None]:
    """Measured receptive-field size (height, width) in input pixels of each 4-D layer.

    The support of d(sum over channels of A[:, :, h/2, w/2]) / d input, on the first image (one
    forward pass, one backward per layer). None for layers without a spatial grid.
    """
    result: dict[str, tuple[int, int] | None] = {}
    inp = x[:1].detach().clone().requires_grad_(True)  # (1, 3, H, W)
    with torch.enable_grad():
        acts = _outputs(model, layers, inp)
        for i, name in enumerate(layers):
            act = acts[name]
            if act.ndim != 4 or not act.requires_grad:
                result[name] = None
                continue
            hc, wc = act.shape[2] // 2, act.shape[3] // 2
            (grad,) = torch.autograd.grad(act[:, :, hc, wc].sum(), inp, retain_graph=i < len(layers) - 1)
            support = grad.abs().sum(dim=(0, 1)) > 0  # (H, W)
            rows, cols = support.any(dim=1).nonzero(), support.any(dim=0).nonzero()
            if len(rows) == 0:  # dead at the centre: fall back to the whole image
                result[name] = (int(x.shape[2]), int(x.shape[3]))
                continue
            result[name] = (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    return result


def _box(pos: int, grid: tuple[int, int], image: tuple[int, int], rf: tuple[int, int]) -> tuple[int, int, int, int]:
    """The receptive-field box (x0, y0, x1, y1) of grid position `pos`, shifted inside the image."""
    gh, gw = grid
    ih, iw = image
    h, w = divmod(int(pos), gw)
    cy, cx = (h + 0.5) * ih / gh, (w + 0.5) * iw / gw
    bh, bw = min(max(rf[0], 4), ih), min(max(rf[1], 4), iw)
    y0 = int(round(min(max(cy - bh / 2, 0), ih - bh)))
    x0 = int(round(min(max(cx - bw / 2, 0), iw - bw)))
    return x0, y0, x0 + bw, y0 + bh


def neuron_patches(
    model: nn.Module,
    layers: Sequence[str],
    x: torch.Tensor,
    channels: Sequence[Sequence[int]],
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    config: ThumbnailConfig = ThumbnailConfig(),
    progress: Progress | None = None,
) -> list[NeuronPatches]:
    """The top-activating patches of the given neurons over a set of model inputs.

    Args:
        model: the network in eval mode (on the device of its parameters).
        layers: dotted layer names.
        x: preprocessed inputs (N, 3, H, W), on CPU.
        channels: per layer, the channels to make patches for (e.g. a circuit's, or the union of a
            run's circuits).
        mean, std: the normalisation in `x`, undone for display.
        config: how many patches and how large.
        progress: optional callback (stage, done, total).

    Returns:
        One `NeuronPatches` per (layer, channel), strongest image first; ties: lower image index.
    """
    assert len(layers) == len(channels), "one channel list per layer"
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    wanted = [
        (i, name, torch.as_tensor(list(ch), dtype=torch.long))
        for i, (name, ch) in enumerate(zip(layers, channels))
        if len(ch)
    ]
    names = [name for _, name, _ in wanted]
    if not names:
        return []
    maxima: dict[str, list[torch.Tensor]] = {n: [] for n in names}  # per batch (B, k)
    argmax: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    grids: dict[str, tuple[int, int] | None] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    n = x.shape[0]
    for start in range(0, n, config.batch_size):
        batch = x[start : start + config.batch_size].to(device)
        with torch.no_grad():
            outs = _outputs(model, names, batch)
        for _, name, ch in wanted:
            from ingest.cla.capture import channels_first

            act = outs[name]
            shapes[name] = tuple(act.shape)
            grids[name] = (int(act.shape[2]), int(act.shape[3])) if act.ndim == 4 else None
            flat = channels_first(act)[:, ch.to(act.device)].float()  # (B, k, P)
            batch_max, batch_at = flat.max(dim=2)
            maxima[name].append(batch_max.cpu())
            argmax[name].append(batch_at.cpu())
        if progress is not None:
            progress("thumbnails", min(start + config.batch_size, n), n)
    from ingest.cla.tokens import token_box

    rfs = receptive_fields(model, names, x[:1].to(device))
    pixels = _display_pixels(x, mean, std)  # (N, H, W, 3)
    image_hw = (int(x.shape[2]), int(x.shape[3]))
    result = []
    encoded: dict[tuple[int, tuple[int, int, int, int]], bytes] = {}  # neurons often share a crop
    for _, name, ch in wanted:
        values = torch.cat(maxima[name]).numpy()  # (N, k)
        where = torch.cat(argmax[name]).numpy()
        for j, channel in enumerate(ch.tolist()):
            order = np.lexsort((np.arange(n), -values[:, j]))[: config.top]  # strongest, then index
            patches = []
            for img in order.tolist():
                grid, rf = grids[name], rfs[name]
                token = token_box(name, shapes[name], int(where[img, j]), image_hw)  # ViT: the patch
                if token is not None:
                    box = token
                elif grid is None or rf is None:
                    box = (0, 0, image_hw[1], image_hw[0])
                else:
                    box = _box(int(where[img, j]), grid, image_hw, rf)
                if (img, box) not in encoded:
                    crop = pixels[img, box[1] : box[3], box[0] : box[2]]
                    encoded[(img, box)] = png_thumbnail(np.ascontiguousarray(crop), config.size)
                patches.append((img, float(values[img, j]), box, encoded[(img, box)]))
            result.append(NeuronPatches(name, int(channel), tuple(patches)))
    return result


def example_thumbnails(images: Sequence[np.ndarray], size: int = 64) -> list[tuple[int, int, bytes]]:
    """(width, height, png) of each RGB uint8 image, longer side `size` pixels."""
    return [(int(im.shape[1]), int(im.shape[0]), png_thumbnail(np.ascontiguousarray(im), size)) for im in images]


def store_thumbnails(
    session: Session,
    *,
    run_id: int,
    model_id: int,
    concept_id: int,
    image_set_sha256: str,
    patches: Sequence[NeuronPatches],
    thumbnails: Sequence[tuple[int, int, bytes]],
) -> tuple[int, int]:
    """Write a run's neuron patches (replacing old ones) and its image set's thumbnails.

    Call inside the run's own transaction (after the run and its example images are written).

    Returns:
        (patches written, thumbnails written now).
    """
    image_ids = media.example_image_ids(session, concept_id, image_set_sha256)
    ids = media.neuron_id_map(session, model_id, sorted({p.layer for p in patches}))
    rows = [
        media.PatchRow(run_id, ids[(p.layer, p.channel)], rank, image_ids[img], act, box, png)
        for p in patches
        for rank, (img, act, box, png) in enumerate(p.patches)
    ]
    written = media.write_patches(session, run_id, rows)
    thumbs = media.write_image_thumbnails(
        session, [(image_ids[i], w, h, png) for i, (w, h, png) in enumerate(thumbnails)]
    )
    return written, thumbs


_CATFISH_SOURCE = re.compile(r"^catfish:(?P<name>[^#]+)#seed=(?P<seed>-?\d+)#(?P<index>\d+)$")


def _images_of_run(sources: Sequence[str], sha256s: Sequence[str]) -> list[np.ndarray]:
    """Read a stored image set again from its recorded sources and check each sha256."""
    import hashlib

    rendered: dict[tuple[str, int], np.ndarray] = {}
    images = []
    for i, (source, sha) in enumerate(zip(sources, sha256s)):
        m = _CATFISH_SOURCE.match(source)
        if m:
            from ingest.datasets import catfish

            key = (m["name"], int(m["seed"]))
            if key not in rendered:
                rendered[key] = catfish.render_concept(key[0], len(sources), seed=key[1])
            pixels = rendered[key][int(m["index"])]
            digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
        else:
            try:
                data = open(source, "rb").read()
            except OSError as exc:
                raise ThumbnailError(
                    f"example image {source} cannot be read ({exc.strerror}): thumbnails need the run's "
                    "images where they were at ingest"
                ) from exc
            digest = hashlib.sha256(data).hexdigest()
            with Image.open(io.BytesIO(data)) as im:
                pixels = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if digest != sha:
            raise ThumbnailError(f"example image {i} ({source}) has changed since the run: its sha256 differs")
        images.append(pixels)
    return images


def recompute_run_thumbnails(
    cat,
    run_id: int,
    model: str,
    *,
    weights: str | None = None,
    device: str = "cpu",
    config: ThumbnailConfig = ThumbnailConfig(),
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Compute and store the thumbnails of a stored run (all neurons of all its circuits).

    Args:
        cat: an open, writable catalog.
        run_id: a complete run.
        model: the model name (as for ingest); its weights must hash to the run's model.
        weights: local weights file, as for ingest.
        device: where to run the model.
        config: how many patches and how large.
        progress: optional callback (stage, done, total).

    Returns:
        (patches written, thumbnails written now).

    Raises:
        NotFound: no such run. ThumbnailError: other weights, or the images cannot be read again.
    """
    from catalog import store
    from ingest import zoo
    from ingest.zoo.preprocessing import Preprocessing

    with cat.session() as s:
        run = store.read_run(s, run_id)
        if run.status != "complete":
            raise ThumbnailError(f"run {run_id} is {run.status}, not complete: ingest it again")
        circuits = store.list_circuits(s, run_id=run_id)
        sources = media.image_set_sources(s, run.concept_id, run.image_set_sha256)
    loaded = zoo.load_model(model, weights=weights, layers=list(run.layer_names))
    if loaded.weights_sha256 != run.weights_sha256:
        raise ThumbnailError(
            f"run {run_id} was computed with weights {run.weights_sha256[:12]}, but {model} loaded "
            f"{loaded.weights_sha256[:12]}: pass the run's weights with --weights"
        )
    images = _images_of_run([src for src, _ in sources], [sha for _, sha in sources])
    stored = run.params.get("preprocessing") if isinstance(run.params, dict) else None
    pp = Preprocessing.from_params(stored) if stored is not None else loaded.spec.pp
    x = zoo.preprocess(pp, images)  # the inputs the run itself used
    loaded.module.to(device)
    channels = [sorted({c for circuit in circuits for c in circuit.channels[i]}) for i in range(len(run.layer_names))]
    patches = neuron_patches(
        loaded.module, list(run.layer_names), x, channels, mean=pp.mean, std=pp.std, config=config, progress=progress
    )
    thumbs = example_thumbnails(images, config.image_size)
    with cat.session() as s, s.begin():
        return store_thumbnails(
            s,
            run_id=run_id,
            model_id=run.model_id,
            concept_id=run.concept_id,
            image_set_sha256=run.image_set_sha256,
            patches=patches,
            thumbnails=thumbs,
        )
