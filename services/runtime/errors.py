"""One root error for the runtime. Outcomes are events; only transport and
configuration failures raise."""


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class PublishError(VigilError):
    """JetStream did not store a message (no stream, error reply, or no ack in time)."""


class StreamFull(PublishError):
    """JetStream refused a message because its stream (or the server's store) is at its limit."""
