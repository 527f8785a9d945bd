"""Decision intake: Gatekeeper's violation export as it ships and the proposed decision log,
from a unix socket (ndjson) or Gatekeeper's disk-export directory, into DECISIONS."""
