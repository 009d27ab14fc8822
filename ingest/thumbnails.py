"""Thumbnails for the catalog: each circuit neuron's top-activating example patches, and the
concept's example images, as small WebP images (stored by `catalog.media`; lossy at quality 80:
a 64 px tile is ~1–1.5 kB where a PNG took 7–10 kB, and these are for looking at, not measuring).

A neuron's patches: over the run's concept images, the `top` images where the neuron's maximum
activation (over positions) is largest; each is cropped to the neuron's receptive field around
that maximum's position and resized to `size` pixels. The receptive field of a layer is measured,
not derived from the architecture: the support of the input gradient of one position of the
layer (all channels summed) on a real image, so it works for any model. Outputs without a spatial
grid (vectors, tokens) get the whole image.

    patches = neuron_patches(loaded, x, layers, channels)        # before the run's transaction
    store_thumbnails(session, run_id, concept_id, image_set_sha256, model_ref, patches, images)

`ingest.run_media.recompute_run_thumbnails` does the same for a stored run (its images are read
again from their recorded sources, or re-rendered for CatFish sets, and checked against their
sha256s). Each patch also carries its whole image with the neuron's activation map over it
(`heatmap_overlay`: where the neuron fires).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from sqlalchemy.orm import Session
from torch import nn

from catalog import media
from catalog.errors import CircuitsError
from ingest.token_maps import attention_from_cls, is_token_output, unit_grid

__all__ = [
    "NeuronPatches",
    "ThumbnailConfig",
    "ThumbnailError",
    "encode_thumbnail",
    "example_thumbnails",
    "heatmap_overlay",
    "neuron_patches",
    "png_thumbnail",
    "receptive_fields",
    "store_thumbnails",
]

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class ThumbnailError(CircuitsError):
    """Thumbnails cannot be computed for a run as asked."""


@dataclass(frozen=True)
class ThumbnailConfig:
    """How many patches and how large (each image stays under `catalog.media.MAX_IMAGE_BYTES`)."""

    top: int = 4  # patches per neuron: enough to see what it responds to, small in the catalog
    size: int = 64  # patch side in pixels (Microscope-like small tiles)
    image_size: int = 64  # example-image thumbnail's longer side
    batch_size: int = 32  # images per forward pass (memory only)


@dataclass(frozen=True)
class NeuronPatches:
    """One neuron's computed patches: (image index, activation, box (x0, y0, x1, y1), image bytes),
    and per patch the whole image with the neuron's activation map over it (None without a grid)."""

    layer: str
    channel: int
    patches: tuple[tuple[int, float, tuple[int, int, int, int], bytes], ...]
    heatmaps: tuple[bytes | None, ...] = ()


_HOT = np.asarray([1.0, 0.45, 0.05], dtype=np.float32)  # the overlay's colour where the neuron fires most


def heatmap_overlay(pixels: np.ndarray, amap: np.ndarray, top: float, size: int) -> bytes:
    """The image (H, W, 3) uint8 with an activation map (h, w) upsampled over it, as a WebP.

    Where the neuron is silent the image is dimmed; where it fires it is tinted orange, in
    proportion to the activation over `top` (the neuron's strongest activation among its
    examples, so one neuron's overlays share a scale). Longer side `size` pixels.
    """
    h, w = pixels.shape[:2]
    m = torch.as_tensor(np.clip(amap / top, 0.0, 1.0) if top > 0 else np.zeros_like(amap), dtype=torch.float32)
    up = torch.nn.functional.interpolate(m[None, None], size=(h, w), mode="bilinear", align_corners=False)
    v = up[0, 0].numpy()[..., None]  # (H, W, 1) in [0, 1]
    img = pixels.astype(np.float32) / 255
    out = img * (0.3 + 0.7 * v) * (1 - 0.5 * v) + 0.5 * v * _HOT
    return encode_thumbnail((np.clip(out, 0, 1) * 255).round().astype(np.uint8), size)


WEBP_QUALITY = 80  # visually clean at 64 px; 80 → 70 saves only ~15 % more


def encode_thumbnail(pixels: np.ndarray, size: int, fmt: str = "WEBP") -> bytes:
    """Encode an RGB uint8 image (H, W, 3) as a WebP (or `fmt`: "PNG") whose longer side is `size` px.

    Shrinks further if the image would exceed `catalog.media.MAX_IMAGE_BYTES`. A Pillow built
    without WebP writes PNG instead (`catalog.media` accepts both).
    """
    assert pixels.ndim == 3 and pixels.shape[-1] == 3 and pixels.dtype == np.uint8, pixels.shape
    if fmt == "WEBP" and not _webp_available():
        fmt = "PNG"
    options = {"quality": WEBP_QUALITY, "method": 4} if fmt == "WEBP" else {}
    h, w = pixels.shape[:2]
    side = size
    while True:
        scale = side / max(h, w)
        im = Image.fromarray(pixels).resize(
            (max(1, round(w * scale)), max(1, round(h * scale))),
            Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.NEAREST,
        )
        buf = io.BytesIO()
        im.save(buf, format=fmt, **options)
        data = buf.getvalue()
        if len(data) <= media.MAX_IMAGE_BYTES or side <= 8:
            return data
        side = side * 3 // 4


def png_thumbnail(pixels: np.ndarray, size: int) -> bytes:
    """`encode_thumbnail` as a PNG (lossless; 5–10× the bytes of the WebP the catalog stores)."""
    return encode_thumbnail(pixels, size, "PNG")


def _webp_available() -> bool:
    from PIL import features

    return bool(features.check("webp"))


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
    rfs = receptive_fields(model, names, x[:1].to(device))
    pixels = _display_pixels(x, mean, std)  # (N, H, W, 3)
    image_hw = (int(x.shape[2]), int(x.shape[3]))
    orders = {}
    for _, name, ch in wanted:
        values = torch.cat(maxima[name]).numpy()  # (N, k)
        orders[name] = [np.lexsort((np.arange(n), -values[:, j]))[: config.top] for j in range(len(ch))]
    maps, attention, rows = _activation_maps(model, names, x, wanted, orders, config.batch_size, device)
    result = []
    encoded: dict[tuple[int, tuple[int, int, int, int]], bytes] = {}  # neurons often share a crop
    whole = (0, 0, image_hw[1], image_hw[0])
    for _, name, ch in wanted:
        values = torch.cat(maxima[name]).numpy()  # (N, k)
        where = torch.cat(argmax[name]).numpy()
        token = is_token_output(name, shapes[name])  # ViT unit: patch-grid heat-maps, no crops
        for j, channel in enumerate(ch.tolist()):
            order = orders[name][j].tolist()  # strongest, then lower index
            unit_maps = [maps.get((name, int(channel), img)) for img in order]
            top = float(values[order[0], j]) if order else 0.0
            patches = []
            for img, amap in zip(order, unit_maps):
                grid, rf = grids[name], rfs[name]
                if token:  # the whole image, the unit's activation on each patch over it
                    live = [m for m in unit_maps if m is not None]  # one scale per unit, from its floor
                    lo = max(0.0, min((float(m.min()) for m in live), default=0.0))  # head norms: all > 0
                    hi = max((float(m.max()) for m in live), default=0.0) - lo
                    png = heatmap_overlay(pixels[img], amap - lo, hi, config.size) if amap is not None else None
                    patches.append(
                        (img, float(values[img, j]), whole, png or encode_thumbnail(pixels[img], config.size))
                    )
                    continue
                box = whole if grid is None or rf is None else _box(int(where[img, j]), grid, image_hw, rf)
                if (img, box) not in encoded:
                    crop = pixels[img, box[1] : box[3], box[0] : box[2]]
                    encoded[(img, box)] = encode_thumbnail(np.ascontiguousarray(crop), config.size)
                patches.append((img, float(values[img, j]), box, encoded[(img, box)]))
            if token:  # heads: their attention from the class token; MLP neurons: the tile is the map
                att = attention.get(name)
                att_maps = [None if att is None else att[rows[img], int(channel)] for img in order]
                att_top = max((float(m.max()) for m in att_maps if m is not None), default=0.0)
                heat = tuple(
                    None if m is None else heatmap_overlay(pixels[img], m, att_top, max(config.size, 96))
                    for img, m in zip(order, att_maps)
                )
            else:
                heat = tuple(
                    None if m is None else heatmap_overlay(pixels[img], m, top, max(config.size, 96))
                    for img, m in zip(order, unit_maps)
                )
            result.append(NeuronPatches(name, int(channel), tuple(patches), heat))
    return result


def _activation_maps(model, names, x, wanted, orders, batch_size, device):
    """For each neuron's top images (one more forward pass over just those images):
    {(layer, channel, image index): (h, w) map} (conv layers: the activation map; token units: the
    patch-grid map, `ingest.token_maps.unit_grid`) and, per head layer, the attention from the class
    token of those images, (len(rows), H, g, g) (`attention_from_cls`), and rows: image index → row."""
    needed = sorted({int(i) for name in names for o in orders[name] for i in o.tolist()})
    if not needed:
        return {}, {}, {}
    row = {img: r for r, img in enumerate(needed)}
    kept: dict[str, list[torch.Tensor]] = {}
    att_parts: dict[str, list] = {}
    for start in range(0, len(needed), batch_size):
        batch = x[needed[start : start + batch_size]].to(device)
        with torch.no_grad():
            outs = _outputs(model, names, batch)
        for name in names:
            if outs[name].ndim in (3, 4):
                kept.setdefault(name, []).append(outs[name].float().cpu())
        for name, att in attention_from_cls(model, names, batch).items():
            att_parts.setdefault(name, []).append(att)
    out = {}
    for _, name, ch in wanted:
        if name not in kept:
            continue
        act = torch.cat(kept[name])  # (len(needed), C, h, w), (len(needed), T, D) or (len(needed), H, T, hd)
        token = is_token_output(name, tuple(act.shape))
        if not token and act.ndim != 4:
            continue
        for j, channel in enumerate(ch.tolist()):
            for img in orders[name][j].tolist():
                a = act[row[int(img)]]
                out[(name, int(channel), int(img))] = (
                    unit_grid(name, a, int(channel)) if token else a[int(channel)].numpy()
                )
    attention = {
        name: None if any(p is None for p in parts) else np.concatenate(parts) for name, parts in att_parts.items()
    }
    return out, attention, row


def example_thumbnails(images: Sequence[np.ndarray], size: int = 64) -> list[tuple[int, int, bytes]]:
    """(width, height, image bytes) of each RGB uint8 image, longer side `size` pixels."""
    return [(int(im.shape[1]), int(im.shape[0]), encode_thumbnail(np.ascontiguousarray(im), size)) for im in images]


def store_thumbnails(
    session: Session,
    *,
    run_id: int,
    model_id: int,
    concept_id: int,
    image_set_sha256: str,
    patches: Sequence[NeuronPatches],
    thumbnails: Sequence[tuple[int, int, bytes]],
    reference: bool = False,
) -> tuple[int, int]:
    """Write a run's neuron patches (replacing old ones) and its image set's thumbnails.

    Call inside the run's own transaction (after the run and its example images are written).
    With `reference`, the patches are the run's reference-set patches (`concept_id` and
    `image_set_sha256` name the reference set) and replace its old reference patches only.

    Returns:
        (patches written, thumbnails written now).
    """
    image_ids = media.example_image_ids(session, concept_id, image_set_sha256)
    ids = media.neuron_id_map(session, model_id, sorted({p.layer for p in patches}))
    rows = [
        media.PatchRow(
            run_id,
            ids[(p.layer, p.channel)],
            rank,
            image_ids[img],
            act,
            box,
            png,
            p.heatmaps[rank] if rank < len(p.heatmaps) else None,
        )
        for p in patches
        for rank, (img, act, box, png) in enumerate(p.patches)
    ]
    written = media.write_patches(session, run_id, rows, reference=reference)
    thumbs = media.write_image_thumbnails(
        session, [(image_ids[i], w, h, png) for i, (w, h, png) in enumerate(thumbnails)]
    )
    return written, thumbs
