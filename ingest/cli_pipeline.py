"""Commands registered on the package app (placeholder until written)."""

from __future__ import annotations
