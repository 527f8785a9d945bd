"""The runtime's errors. The root, :class:`VigilError`, lives in ``contracts.errors``
(re-exported here); outcomes are events, only transport and configuration failures raise."""

from contracts.errors import VigilError

__all__ = ["PublishError", "VigilError"]


class PublishError(VigilError):
    """JetStream did not store a message (no stream, error reply, or no ack in time)."""


class StreamFull(PublishError):
    """JetStream refused a message because its stream (or the server's store) is at its limit."""
