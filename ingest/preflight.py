"""Checks an ingest runs after the model is loaded and before anything is written or computed.

A wrong layer order, `--batch-size 0` or `--device cuda` without a GPU used to surface inside
the attribution, after the catalog had recorded a `failed` run and a concept; here they are
refused first, so a refused ingest leaves the catalog as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

from catalog.errors import CircuitsError

__all__ = ["PreflightError", "check_ingest_inputs"]


class PreflightError(CircuitsError):
    """An ingest input that cannot work, found before any computation or write."""


def check_ingest_inputs(module, layers: Sequence[str], x, *, batch_size: int, device: str, tokens: str = "all") -> None:
    """Refuse inputs the attribution would fail on, cheaply (one image, no gradients kept).

    Args:
        module: the loaded model (eval mode).
        layers: the CLA layers, meant in forward order.
        x: the preprocessed images, (N, 3, H, W).
        batch_size: images per forward pass.
        device: the requested device ("auto", "cpu", "cuda", …).
        tokens: the token selection (`ingest.cla.tokens`).

    Raises:
        PreflightError: batch size below 1, or no images.
        DeviceError: the device is unknown or unavailable (`ingest.hooks`).
        LayerOrderError, CaptureError: the layers are not a forward chain (`ingest.cla.capture`).
        ImageSizeError, TokenSelectionError: a ViT fed another image size than its own; a token
            selection that is unknown or leaves a layer no tokens (`ingest.cla.tokens`).
    """
    from ingest.cla.capture import capture_layers
    from ingest.cla.tokens import check_image_size, check_tokens, position_masks
    from ingest.hooks import resolve_device

    if int(batch_size) < 1:
        raise PreflightError(f"batch size must be at least 1 (got {batch_size})")
    if len(x) == 0:
        raise PreflightError("no images to attribute: give a folder or dataset with at least one image")
    resolve_device(device)
    check_tokens(tokens)
    check_image_size(module, x)
    from ingest.user_code import forward_time_limit, user_model_error

    try:
        with forward_time_limit("the model's forward pass on one image"):
            captured = capture_layers(module, list(layers), x[:1])  # checks each layer feeds the next
    except CircuitsError:
        raise
    except Exception as exc:
        err = user_model_error(exc, "its forward pass on the first image (before anything was written)")
        if err is not None:  # the user's model refuses its input: one line, nothing written
            raise err from exc
        return  # another failure: the computation records it as a failed run
    position_masks(list(layers), captured.leaves, tokens)
    del captured
