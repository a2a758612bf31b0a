"""Errors of the model package."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A weights file cannot be read or does not fit the requested model."""
