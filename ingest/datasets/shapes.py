"""Drawing of CatFish-synth primitives and cluttered backgrounds.

A primitive is a shape (signed distance, negative inside) filled with a two-colour texture, both
computed analytically in the primitive's rotated local frame on the pixels of its bounding square.
Coverage is taken from the signed distance over one pixel, so edges are anti-aliased without
supersampling and drawing costs a few NumPy operations per primitive.

Each primitive pairs a shape with a texture, so neither the outline nor any single colour names it
(colours are random per instance):

    stripes  disc with parallel stripes       rings    disc with concentric rings (a target)
    checker  square with a checkerboard       star     five-pointed star with an inner star
    dots     triangle with a lattice of dots  hatch    hexagon with cross-hatching
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

PRIMITIVE_SHAPES = ("stripes", "checker", "dots", "rings", "star", "hatch")

_TAU = 2.0 * math.pi


def _coverage(sd: np.ndarray) -> np.ndarray:
    """Fraction of a pixel inside a shape from its signed distance in pixels (1 px ramp)."""
    return np.clip(0.5 - sd, 0.0, 1.0)


def _square_wave(x: np.ndarray, period: float) -> np.ndarray:
    """Anti-aliased 0/1 square wave of `period` pixels (about a one-pixel ramp at each edge)."""
    return np.clip(0.5 + np.sin(x * (_TAU / period)) * (period / _TAU), 0.0, 1.0)


def _polygon_sd(rho: np.ndarray, phi: np.ndarray, n: int, r_in: float) -> np.ndarray:
    """Signed distance (exact inside, approximate near corners) to a regular n-gon, vertex at 0."""
    sector = _TAU / n
    off = np.mod(phi, sector) - sector / 2  # angle from the nearest edge normal
    return rho * np.cos(off) - r_in


def _star_sd(rho: np.ndarray, phi: np.ndarray, r_out: float) -> np.ndarray:
    """Signed distance to the edge of a five-pointed star with outer radius `r_out`.

    Folding the angle into one tenth of a turn leaves a single edge, from the inner vertex (angle 0
    in the folded frame) to the outer one (angle pi/5); the distance to that line is exact inside.
    """
    r_in = 0.45 * r_out
    half = math.pi / 5
    folded = np.abs(np.mod(phi, 2 * half) - half)  # pi/5 at an outer vertex (phi = 0), 0 inner
    px, py = r_in, 0.0
    qx, qy = r_out * math.cos(half), r_out * math.sin(half)
    nx, ny = qy - py, -(qx - px)  # normal to the edge, pointing away from the centre
    norm = math.hypot(nx, ny)
    nx, ny = nx / norm, ny / norm
    return (rho * np.cos(folded) - px) * nx + (rho * np.sin(folded) - py) * ny


# Each drawer maps the local frame (u, v), its polar form (rho, phi), the radius r, the texture
# period p and a texture phase (pixels) to (shape coverage, texture weight), both (h, w).


def _stripes(u, v, rho, phi, r, p, ph):
    return _coverage(rho - r), _square_wave(u + ph, p)


def _checker(u, v, rho, phi, r, p, ph):
    half = 0.7 * r  # the square's corners stay inside the placement circle
    sd = np.maximum(np.abs(u), np.abs(v)) - half
    wave = np.sin((u + ph) * (_TAU / p)) * np.sin((v + ph) * (_TAU / p))
    return _coverage(sd), np.clip(0.5 + wave * (p / math.pi), 0.0, 1.0)


def _dots(u, v, rho, phi, r, p, ph):
    sd = _polygon_sd(rho, phi, 3, 0.5 * r)  # circumradius r, inradius r/2
    du = np.mod(u + ph, p) - p / 2
    dv = np.mod(v + ph, p) - p / 2
    return _coverage(sd), _coverage(np.sqrt(du * du + dv * dv) - 0.3 * p)


def _rings(u, v, rho, phi, r, p, ph):
    return _coverage(rho - r), _square_wave(rho - p / 4, p)  # centred: the phase is unused


def _star(u, v, rho, phi, r, p, ph):
    return _coverage(_star_sd(rho, phi, r)), _coverage(_star_sd(rho, phi, 0.5 * r))


def _hatch(u, v, rho, phi, r, p, ph):
    sd = _polygon_sd(rho, phi, 6, r * math.cos(math.pi / 6))
    a = (u + v) * (1 / math.sqrt(2)) + ph
    b = (u - v) * (1 / math.sqrt(2)) + ph
    width = 0.18 * p
    line_a = _coverage(np.abs(np.mod(a, p) - p / 2) - width)
    line_b = _coverage(np.abs(np.mod(b, p) - p / 2) - width)
    return _coverage(sd), np.maximum(line_a, line_b)


_Drawer = Callable[..., tuple[np.ndarray, np.ndarray]]

# name -> (shape and texture function, texture period as a fraction of the radius)
_DRAWERS: dict[str, tuple[_Drawer, tuple[float, float]]] = {
    "stripes": (_stripes, (0.45, 0.6)),
    "checker": (_checker, (0.55, 0.75)),  # one period holds two cells
    "dots": (_dots, (0.3, 0.38)),
    "rings": (_rings, (0.45, 0.6)),
    "star": (_star, (1.0, 1.0)),  # the inner star needs no period
    "hatch": (_hatch, (0.4, 0.5)),
}
assert tuple(_DRAWERS) == PRIMITIVE_SHAPES, "every primitive needs a drawer"


def _random_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two saturated colours of random hue with a clear difference in brightness."""
    hue = rng.random()
    hue2 = (hue + rng.uniform(0.25, 0.75)) % 1.0
    bright, dark = rng.uniform(0.75, 1.0), rng.uniform(0.1, 0.4)
    if rng.random() < 0.5:
        bright, dark = dark, bright
    c1 = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), bright)
    c2 = colorsys.hsv_to_rgb(hue2, rng.uniform(0.55, 1.0), dark)
    return np.asarray(c1, np.float32), np.asarray(c2, np.float32)


def primitive_alpha(
    name: str,
    size: int,
    cx: float,
    cy: float,
    radius: float,
    angle: float,
    period_frac: float,
    phase: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Coverage and texture of one primitive on the pixels of its bounding square.

    Args:
        name: a primitive name (`PRIMITIVE_SHAPES`).
        size: side of the square canvas in pixels.
        cx, cy: centre in pixels (x to the right, y down).
        radius: radius of the circle that contains the whole shape, in pixels.
        angle: rotation in radians.
        period_frac: texture period as a fraction of `radius`.
        phase: texture offset in pixels along the local axes.

    Returns:
        `(alpha, texture, (y0, y1, x0, x1))`: alpha (h, w) in [0, 1] is the shape's coverage,
        texture (h, w) in [0, 1] the weight of the second colour, on canvas[y0:y1, x0:x1].
    """
    drawer, _ = _DRAWERS[name]
    x0, x1 = max(int(math.floor(cx - radius - 1)), 0), min(int(math.ceil(cx + radius + 1)), size)
    y0, y1 = max(int(math.floor(cy - radius - 1)), 0), min(int(math.ceil(cy + radius + 1)), size)
    xs = np.arange(x0, x1, dtype=np.float32) + (0.5 - cx)
    ys = np.arange(y0, y1, dtype=np.float32) + (0.5 - cy)
    dx, dy = xs[None, :], ys[:, None]  # broadcast to (h, w)
    c, s = math.cos(angle), math.sin(angle)
    u = dx * c + dy * s  # (h, w) local frame, rotated by -angle
    v = dy * c - dx * s
    rho = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    alpha, texture = drawer(u, v, rho, phi, radius, period_frac * radius, phase)
    return alpha.astype(np.float32), texture.astype(np.float32), (y0, y1, x0, x1)


def draw_primitive(
    canvas: np.ndarray,
    name: str,
    cx: float,
    cy: float,
    radius: float,
    angle: float,
    rng: np.random.Generator,
) -> None:
    """Composite one primitive with random colours and texture period onto `canvas` in place.

    Args:
        canvas: float32 (H, W, 3) image in [0, 1], modified in place.
        name: a primitive name (`PRIMITIVE_SHAPES`).
        cx, cy, radius, angle: placement (see `primitive_alpha`).
        rng: the image's random generator (colours, period, phase).
    """
    _, (lo, hi) = _DRAWERS[name]
    period_frac = rng.uniform(lo, hi)
    phase = rng.uniform(0.0, period_frac * radius)
    c1, c2 = _random_colours(rng)
    alpha, texture, (y0, y1, x0, x1) = primitive_alpha(name, canvas.shape[0], cx, cy, radius, angle, period_frac, phase)
    colour = c1 + texture[..., None] * (c2 - c1)  # (h, w, 3)
    patch = canvas[y0:y1, x0:x1]
    a = alpha[..., None]
    patch *= 1.0 - a
    patch += a * colour


def draw_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A low-contrast cluttered background: tinted gradient, blobs and lines.

    Args:
        size: side of the square image in pixels.
        rng: the image's random generator.

    Returns:
        float32 (size, size, 3) image in [0, 1].
    """
    base = np.asarray(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.7)), np.float32)

    def jitter(amount: float) -> tuple[int, int, int]:
        rgb = np.clip(base + rng.uniform(-amount, amount, 3), 0.0, 1.0)
        r, g, b = (int(round(255 * c)) for c in rgb)
        return r, g, b

    img = Image.new("RGB", (size, size), jitter(0.0))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 10))):
        x, y = rng.uniform(-0.1 * size, 1.1 * size, 2)
        rx, ry = rng.uniform(0.05 * size, 0.3 * size, 2)
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=jitter(0.12))
    for _ in range(int(rng.integers(2, 7))):
        pts = rng.uniform(0, size, 4)
        draw.line(tuple(float(p) for p in pts), fill=jitter(0.15), width=int(rng.integers(1, 3)))
    arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)  # (H, W, 3)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    gx, gy = rng.uniform(-0.12, 0.12, 2)
    return arr + (gx * ramp[None, :, None] + gy * ramp[:, None, None])
