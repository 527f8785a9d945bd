"""One root error for the whole project. Every error Vigil raises on purpose derives
from :class:`VigilError` (and keeps the built-in base it already had, e.g. ``ValueError``
for bad input), so a caller can catch Vigil's errors as one. Outcomes are events;
only transport, configuration and input failures raise."""

from __future__ import annotations


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""
