"""Feature visualisation of circuit neurons: the picture that drives each unit most.

The Lucid/Lucent recipe (Olah et al., "Feature Visualization", Distill 2017; docs/method.md,
"Looking at neurons"): each picture is parameterised as a Fourier spectrum scaled by 1/frequency
(so low frequencies dominate), mapped to RGB through the decorrelated colour basis of ImageNet
and a sigmoid; Adam raises the unit's mean activation (over its positions) while every step sees
the pictures padded, jittered, scaled and rotated at random, so only features that survive small
transformations grow. One picture per unit, all units of a circuit in one batch: images are
independent, so the summed objective gives each picture its own unit's gradient. The forward
pass stops at the deepest layer asked for.

    pictures = feature_visualisations(model, units, mean=pp.mean, std=pp.std, config=FeatureVisConfig(size=128))
    act = unit_activations(model, units, torch.stack([p.pixels for p in pictures]), mean=pp.mean, std=pp.std)

`recompute_run_featurevis` does this for every circuit neuron of a stored run and stores the
pictures with the run (`catalog.media`, table `neuron_featurevis`), refusing other weights.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from catalog import media, media_featurevis
from ingest.thumbnails import ThumbnailError

if TYPE_CHECKING:
    from ingest.run_media import RunModel
    from ingest.zoo.preprocessing import Preprocessing

__all__ = [
    "FeatureVis",
    "FeatureVisConfig",
    "feature_visualisations",
    "featurevis_per_layer",
    "recompute_run_featurevis",
    "unit_activations",
]

Progress = Callable[[str, int, int], None]  # (stage, done, total)
Unit = tuple[str, int]  # (layer, channel)

# Lucid's square root of ImageNet's colour correlation (its `color_correlation_svd_sqrt`),
# normalised by its largest column norm: RGB = this @ (decorrelated channels).
_COLOR_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR = _COLOR_SVD_SQRT / np.max(np.linalg.norm(_COLOR_SVD_SQRT, axis=0))


@dataclass(frozen=True)
class FeatureVisConfig:
    """How the pictures are made (stored in the catalog beside them)."""

    size: int | None = None  # picture side in pixels, as the model sees it (None: its input size, else 128)
    steps: int = 128  # Adam steps (Lucent: 256-512); on CatFish the ranking test passes from 128 (docs/results.md)
    lr: float = 0.05  # Lucent's default Adam learning rate
    seed: int = 0  # the initial spectra (and the random transformations) are seeded
    decay_power: float = 1.0  # spectrum scale 1/f^decay: Lucent's default
    init_sd: float = 0.5  # initial spectrum noise; Lucent: 0.01, where units silent on flat grey never start (measured)
    batch: int = 16  # units optimised together (memory only: each picture is independent)

    def sized_for(self, pp: Preprocessing) -> FeatureVisConfig:
        """This config, its unset `size` filled in from the model's input size (else 128)."""
        return self if self.size is not None else dataclasses.replace(self, size=int(pp.size or 128))

    def to_params(self) -> dict:
        """The parameters as stored with the pictures (plus the recipe's name)."""
        return {"recipe": "lucent-fft-decorrelated", **asdict(self)}


@dataclass(frozen=True)
class FeatureVis:
    """One unit's picture: its pixels (3, size, size) in [0, 1], the unit's mean activation on
    it (untransformed), and the PNG."""

    layer: str
    channel: int
    pixels: torch.Tensor
    activation: float
    png: bytes


def _freqs(h: int, w: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)  # (h, w // 2 + 1)


class _Pictures(nn.Module):
    """B pictures as scaled Fourier spectra in a decorrelated colour basis (Lucent's `fft_image`
    + `to_valid_rgb(decorrelate=True)`)."""

    def __init__(self, b: int, size: int, decay_power: float, sd: float, generator: torch.Generator):
        super().__init__()
        self.size = size
        shape = (b, 3, size, size // 2 + 1, 2)
        self.spectrum = nn.Parameter(torch.randn(shape, generator=generator) * sd)
        scale = 1.0 / torch.clamp(_freqs(size, size), min=1.0 / size) ** decay_power
        self.scale: torch.Tensor
        self.register_buffer("scale", scale[None, None, :, :, None])  # (1, 1, h, w // 2 + 1, 1)

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.spectrum * self.scale)
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0  # (B, 3, H, W)
        color = torch.as_tensor(_COLOR, dtype=image.dtype, device=image.device)
        image = torch.einsum("ij,bjhw->bihw", color, image)
        return torch.sigmoid(image)  # (B, 3, H, W) in (0, 1)


def _transform(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Lucent's standard transforms, in pixels scaled to the picture's size: pad 12, jitter 8,
    scale 0.9-1.1, rotate ±10°, jitter 4 (at 224 px); one draw per step for the whole batch."""
    s = size / 224

    def draw(n: int) -> int:
        return int(torch.randint(n, (1,), generator=g))

    def jitter(x: torch.Tensor, d: int) -> torch.Tensor:
        if d <= 0:
            return x
        dy, dx = draw(d), draw(d)
        return x[..., dy : x.shape[-2] - d + dy, dx : x.shape[-1] - d + dx]

    pad = max(round(12 * s), 1)
    x = F.pad(x, (pad, pad, pad, pad), value=0.5)
    x = jitter(x, max(round(8 * s), 1))
    factor = 1 + (draw(11) - 5) / 50
    x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    angles = list(range(-10, 11)) + 5 * [0]
    theta = math.radians(angles[draw(len(angles))])
    cos, sin = math.cos(theta), math.sin(theta)
    mat = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return jitter(x, max(round(4 * s), 1))


class _Stop(Exception):
    """Raised by the hook of the deepest layer asked for: the rest of the network is not needed."""


def _layer_outputs(model: nn.Module, layers: Sequence[str], order: Sequence[str], x: torch.Tensor):
    """Outputs of `layers` for input `x`, stopping the forward pass after the deepest (by `order`)."""
    from ingest.hooks import scoped_hooks

    out: dict[str, torch.Tensor] = {}
    last = max(layers, key=lambda n: order.index(n) if n in order else len(order))

    def keep(name: str):
        def hook(module, args, output):
            out[name] = output
            if name == last and len(out) == len(set(layers)):
                raise _Stop

        return hook

    try:
        with scoped_hooks(model, {name: keep(name) for name in set(layers)}):
            model(x)
    except _Stop:
        pass
    missing = [n for n in layers if n not in out]
    if missing:
        raise ThumbnailError(f"layer(s) {', '.join(missing)} did not run in the forward pass")
    return out


def _normalise(x: torch.Tensor, mean, std, channels: int) -> torch.Tensor:
    if channels == 1:
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]  # (B, 1, H, W), as PIL's "L"
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        sd = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - m) / sd
    return x


def _unit_means(outs: dict[str, torch.Tensor], units: Sequence[Unit], rows: Sequence[int]) -> torch.Tensor:
    """(len(rows), len(units)) mean activation of each unit (over its positions) for batch rows."""
    from ingest.cla.capture import channels_first

    cols = []
    for layer, channel in units:
        flat = channels_first(outs[layer])  # (B, C, P)
        cols.append(flat[list(rows), channel].float().mean(dim=-1))
    return torch.stack(cols, dim=1)


def unit_activations(
    model: nn.Module,
    units: Sequence[Unit],
    pictures: torch.Tensor,
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    channels: int = 3,
    order: Sequence[str] | None = None,
) -> torch.Tensor:
    """Mean activation of every unit on every picture: (N pictures, U units).

    Args:
        model: the network in eval mode.
        units: (layer, channel) pairs.
        pictures: (N, 3, H, W) RGB in [0, 1].
        mean, std, channels: the model's input normalisation (None: none).
        order: layers in forward order (default: the order of `units`).
    """
    layers = list(dict.fromkeys(layer for layer, _ in units))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        outs = _layer_outputs(model, layers, order or layers, _normalise(pictures.to(device), mean, std, channels))
        return _unit_means(outs, units, range(pictures.shape[0])).cpu()


def _png(pixels: torch.Tensor) -> bytes:
    arr = (pixels.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    side = arr.shape[0]
    while True:
        buf = io.BytesIO()
        Image.fromarray(arr).resize((side, side), Image.Resampling.LANCZOS).save(buf, format="PNG", optimize=True)
        if len(buf.getvalue()) <= media_featurevis.MAX_FEATUREVIS_BYTES or side <= 32:
            return buf.getvalue()
        side = side * 7 // 8


def feature_visualisations(
    model: nn.Module,
    units: Sequence[Unit],
    *,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    channels: int = 3,
    order: Sequence[str] | None = None,
    config: FeatureVisConfig = FeatureVisConfig(),
    progress: Progress | None = None,
) -> list[FeatureVis]:
    """One optimised picture per unit (Lucent's recipe), `config.batch` units at a time.

    Args:
        model: the network in eval mode (its parameters are not changed; gradients are not kept).
        units: (layer, channel) pairs: CNN channels, or token features (mean over tokens).
        mean, std, channels: the model's input normalisation (None: none).
        order: layers in forward order (the forward pass stops after the deepest).
        config: picture size, steps, learning rate, seed.
        progress: optional callback (stage, done, total), once per step.

    Returns:
        One `FeatureVis` per unit, in the order given.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    size = int(config.size or 128)
    order = list(order or dict.fromkeys(layer for layer, _ in units))
    needs_grad = [p for p in model.parameters() if p.requires_grad]
    for p in needs_grad:  # only the pictures learn; restored below
        p.requires_grad_(False)
    results: list[FeatureVis] = []
    total = config.steps * math.ceil(len(units) / config.batch)
    done = 0
    try:
        for start in range(0, len(units), config.batch):
            chunk = list(units[start : start + config.batch])
            g = torch.Generator().manual_seed(config.seed + start)
            pictures = _Pictures(len(chunk), size, config.decay_power, config.init_sd, g).to(device)
            opt = torch.optim.Adam(pictures.parameters(), lr=config.lr)
            layers = list(dict.fromkeys(layer for layer, _ in chunk))
            rows = range(len(chunk))
            for _ in range(config.steps):
                opt.zero_grad(set_to_none=True)
                x = _normalise(_transform(pictures(), size, g), mean, std, channels)
                outs = _layer_outputs(model, layers, order, x)
                means = _unit_means(outs, chunk, rows)  # (B, B): picture i, unit j
                loss = -means.diagonal().sum()  # picture i raises unit i only
                loss.backward()
                opt.step()
                done += 1
                if progress is not None:
                    progress("feature visualisation", done, total)
            with torch.no_grad():
                final = pictures().detach().cpu()  # (B, 3, H, W)
            own = unit_activations(model, chunk, final, mean=mean, std=std, channels=channels, order=order).diagonal()
            for (layer, channel), pix, act in zip(chunk, final, own.tolist()):
                results.append(FeatureVis(layer, int(channel), pix, float(act), _png(pix)))
    finally:
        for p in needs_grad:
            p.requires_grad_(True)
    return results


def featurevis_per_layer(
    model: nn.Module,
    pp: Preprocessing,
    layers: Sequence[str],
    channels: Sequence[Sequence[int]],
    *,
    config: FeatureVisConfig = FeatureVisConfig(),
    progress: Progress | None = None,
) -> list[FeatureVis]:
    """`feature_visualisations` of the given channels of each layer (a circuit's neurons), the
    model preprocessing its input as `pp`.

    Args:
        model: the model (eval mode).
        pp: its preprocessing (`ingest.zoo.preprocessing.Preprocessing`: mean, std, channels).
        layers: layer names in forward order.
        channels: per layer, the channels to picture.
        config: as for `feature_visualisations` (`config.sized_for(pp)` fills in the size).
        progress: optional callback (stage, done, total).

    Returns:
        One picture per channel, layer by layer.
    """
    units = [(layer, c) for layer, chans in zip(layers, channels) for c in chans]
    return feature_visualisations(
        model,
        units,
        mean=pp.mean,
        std=pp.std,
        channels=pp.channels,
        order=list(layers),
        config=config,
        progress=progress,
    )


def recompute_run_featurevis(
    cat, run_model: RunModel, *, config: FeatureVisConfig = FeatureVisConfig(), progress: Progress | None = None
) -> int:
    """Make and store the feature visualisation of every circuit neuron of a stored run.

    Args:
        cat: an open, writable catalog.
        run_model: the run and its model (`ingest.run_media.load_run_model`).
        config: picture size, steps, learning rate, seed (stored with each picture).
        progress: optional callback (stage, done, total).

    Returns:
        The number of pictures written (the run's old ones are replaced).
    """
    run, pp = run_model.run, run_model.preprocessing
    config = config.sized_for(pp)
    layers = list(run.layer_names)
    pictures = featurevis_per_layer(run_model.module, pp, layers, run_model.channels, config=config, progress=progress)
    params = {**config.to_params(), "weights_sha256": run.weights_sha256}
    size = int(config.size or 128)
    with cat.writing() as s:
        ids = media.neuron_id_map(s, run.model_id, layers)
        rows = [
            media_featurevis.FeatureVisRow(run.id, ids[(p.layer, p.channel)], size, size, p.activation, params, p.png)
            for p in pictures
        ]
        return media_featurevis.write_featurevis(s, run.id, rows)
