"""Token models in CLA (docs/method.md, "Token models"): which tokens count, and the image size a ViT takes.

A token layer's output is (B, T, D), or (B, H, T, head_dim) for a head layer (`ingest.cla.heads`).
The token selection says which of the T tokens enter the score: `all` (default), `patches` (the
tokens after the prefix: class token and any register tokens) or `cls` (token 0). It is applied on
both sides of a pair: upstream, only the selected tokens' |A·∂| terms are summed; downstream, the
norm ‖A_n‖₂ runs over the selected tokens only. The selection is part of a run's provenance.

The prefix length is read from the token count, T = prefix + g² with the largest g that fits
(a square patch grid, as in torchvision's and open_clip's ViTs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from catalog.errors import CircuitsError
from ingest.cla.heads import is_head_layer

__all__ = [
    "TOKEN_SELECTIONS",
    "ImageSizeError",
    "TokenSelectionError",
    "check_image_size",
    "check_tokens",
    "position_masks",
    "prefix_tokens",
    "token_box",
]

TOKEN_SELECTIONS = ("all", "patches", "cls")


class TokenSelectionError(CircuitsError):
    """A token selection that is unknown, leaves no tokens, or is given for a layer without tokens."""


class ImageSizeError(CircuitsError):
    """An image size the model's position embedding does not take."""


def check_tokens(tokens: str) -> str:
    """Return `tokens` when it is a known selection.

    Raises:
        TokenSelectionError: not one of `TOKEN_SELECTIONS`.
    """
    if tokens not in TOKEN_SELECTIONS:
        raise TokenSelectionError(f"unknown token selection {tokens!r}: use one of {', '.join(TOKEN_SELECTIONS)}")
    return tokens


def prefix_tokens(n_tokens: int) -> int:
    """Tokens before the patch grid (class and register tokens): T − g², g = ⌊√T⌋."""
    return n_tokens - math.isqrt(n_tokens) ** 2


def _token_axis(name: str, t: torch.Tensor) -> tuple[int, int]:
    """(T, features per token in a channels-first position run) of a token layer's output."""
    if is_head_layer(name) and t.ndim == 4:
        return int(t.shape[2]), int(t.shape[3])  # (B, H, T, hd): positions are T × hd, token-major
    if t.ndim == 3 and not is_head_layer(name):
        return int(t.shape[1]), 1  # (B, T, D): positions are the T tokens
    raise TokenSelectionError(
        f"layer {name!r} outputs shape {tuple(t.shape)}, not tokens (B, T, D): a token selection other "
        "than `all` needs token layers (a ViT's blocks or heads)"
    )


def position_masks(layers: Sequence[str], outputs: Sequence[torch.Tensor], tokens: str) -> list[torch.Tensor | None]:
    """Per layer, a 0/1 mask over its channels-first positions (`ingest.cla.capture.channels_first`);
    None everywhere for `all`.

    Args:
        layers: the layer names, in forward order.
        outputs: one forward pass's output of each layer.
        tokens: `all`, `patches` or `cls`.

    Returns:
        Per layer, a float tensor (P,) on the output's device, or None.

    Raises:
        TokenSelectionError: unknown selection, a layer without tokens, or no token left.
    """
    check_tokens(tokens)
    if tokens == "all":
        return [None for _ in layers]
    masks: list[torch.Tensor | None] = []
    for name, t in zip(layers, outputs):
        n_tok, per = _token_axis(name, t)
        prefix = prefix_tokens(n_tok)
        keep = torch.zeros(n_tok, device=t.device)
        if tokens == "cls":
            keep[:1] = 1.0 if prefix > 0 else 0.0
        else:
            keep[prefix:] = 1.0
        if not keep.any():
            what = "no class token (T is a square patch grid)" if tokens == "cls" else "no patch tokens"
            raise TokenSelectionError(
                f"token selection {tokens!r} leaves no tokens of layer {name!r} ({n_tok} tokens: {what}); "
                "use `tokens=` all"
            )
        masks.append(keep.repeat_interleave(per))
    return masks


def token_box(name: str, shape: Sequence[int], pos: int, image_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The image box (x0, y0, x1, y1) around the patch of a token layer's channels-first position
    `pos`: its patch and the patches around it (3 × 3); the whole image for a prefix (class)
    token; None when `shape` is not a token layer's (B, T, D) or a head layer's (B, H, T, hd).
    """
    if is_head_layer(name) and len(shape) == 4:
        n_tok, token = int(shape[2]), int(pos) // int(shape[3])
    elif len(shape) == 3 and not is_head_layer(name):
        n_tok, token = int(shape[1]), int(pos)
    else:
        return None
    prefix = prefix_tokens(n_tok)
    g = math.isqrt(n_tok - prefix)
    ih, iw = image_hw
    if token < prefix or g == 0:
        return 0, 0, iw, ih
    row, col = divmod(token - prefix, g)
    y0, y1 = max(row - 1, 0) * ih // g, min(row + 2, g) * ih // g
    x0, x1 = max(col - 1, 0) * iw // g, min(col + 2, g) * iw // g
    return x0, y0, x1, y1


def check_image_size(model: nn.Module, x: torch.Tensor) -> None:
    """Refuse images whose size the ViT's position embedding does not take; other models pass.

    The size is the model's `image_size` (torchvision's and open_clip's ViTs) or, for other ViT
    code, read from its position embedding (a parameter named `pos`, `pos_embed`, `pos_embedding`
    or `positional_embedding`, T = prefix + g² tokens) and its patch embedding (the first
    convolution whose stride equals its kernel): g × patch pixels a side.

    Raises:
        ImageSizeError: the size differs; the message names the size the model takes.
    """
    if x.ndim != 4:
        return
    want, why = _declared_size(model)
    got = (int(x.shape[-2]), int(x.shape[-1]))
    if want is not None and got != want:
        raise ImageSizeError(
            f"{type(model).__name__} takes {want[0]}×{want[1]} images ({why}), got {got[0]}×{got[1]}: "
            f"use `input_size=` {want[0]}"
        )


_POS_NAMES = ("pos", "pos_embed", "pos_embedding", "positional_embedding")


def _declared_size(model: nn.Module) -> tuple[tuple[int, int] | None, str]:
    size = getattr(model, "image_size", None)
    if size is not None and hasattr(model, "patch_size"):
        want = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return want, "its position embedding is sized for them"
    pos = next(
        (p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] in _POS_NAMES and p.ndim in (2, 3)), None
    )
    patch = next(
        (m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride == m.kernel_size and m.stride[0] > 1),
        None,
    )
    if pos is None or patch is None:
        return None, ""
    n_tok = int(pos.shape[-2])
    side = math.isqrt(n_tok - prefix_tokens(n_tok)) * int(patch.stride[0])
    return (side, side), f"its position embedding has {n_tok} tokens of {patch.stride[0]}-pixel patches"
