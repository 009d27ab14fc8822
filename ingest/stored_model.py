"""Which model to rebuild for a stored circuit: never code a catalog names, only code the user names.

A run of a user model stores its factory string (`path/to/file.py:factory`). Importing that string
again would run whatever code sits at that path, chosen by whoever wrote the catalog, so a stored
user model is only shown; rebuilding it needs the user to name the factory on the command line
(`--model path/file.py:factory`). Zoo models are code of this package and are rebuilt by name. The
rebuilt weights are then checked against the stored sha256 by the caller, so naming the wrong
factory is refused too.
"""

from __future__ import annotations

from catalog.errors import CircuitsError

__all__ = ["UntrustedModel", "is_zoo_model", "model_to_rebuild"]


class UntrustedModel(CircuitsError):
    """A command would have to import code that the catalog, not the user, names."""


def is_zoo_model(name: str) -> bool:
    """Whether `name` is a model of this package's zoo (rebuilt without importing user code)."""
    from ingest.zoo import available_models

    return name in available_models()


def model_to_rebuild(stored: str, named: str | None, *, what: str) -> str:
    """The model spec to load for an object found on the catalog's model `stored`.

    Args:
        stored: the model name stored in the catalog (a zoo name or a user factory string).
        named: the model the user gave on the command line (`--model`), or None.
        what: the object, for messages ("circuit 3").

    Returns:
        The spec to pass to `ingest.zoo.load_model`: `stored` for a zoo model, else `named`.

    Raises:
        UntrustedModel: a user model not named by the user, or a named model of another kind
            than the stored one (a zoo model for a user model or the reverse, another zoo model).
    """
    stored_zoo = is_zoo_model(stored)
    if named is None:
        if stored_zoo:
            return stored
        raise UntrustedModel(
            f"{what} was found on the user model {stored!r}; a catalog's model code is never run: "
            "pass the model yourself with `model=` (the nn.Module, or path/to/file.py:factory and its `weights=`)"
        )
    named = named.strip()
    if stored_zoo or is_zoo_model(named):
        if named != stored:
            raise UntrustedModel(
                f"{what} was found on {stored!r}, not {named!r}: "
                + (
                    f"use `model=` {stored} or leave `model=` out"
                    if stored_zoo
                    else "name the user model with `model=` (the nn.Module, or path/to/file.py:factory)"
                )
            )
    return named
