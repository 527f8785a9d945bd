"""Vigil's public bus API: frozen, tagged, versioned msgspec Structs.

Rules: add fields only with defaults; a breaking change is a new tag (``.v2``)
plus a pure upcaster; field names here are the names in every JSON output.
"""

from contracts.codec import ContractError, decode_batch, decode_json, encode_batch, encode_json

__all__ = ["ContractError", "decode_batch", "decode_json", "encode_batch", "encode_json"]
