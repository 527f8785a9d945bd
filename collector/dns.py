"""DNS question parsing (user space: the kernel only copies the payload).

Pure: bytes in, ``(name, qtype)`` out, ``None`` for anything that is not a
well-formed standard query. Compression pointers are not valid in a question
sent by a client and are rejected.
"""

from __future__ import annotations

QTYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    65: "HTTPS",
    255: "ANY",
}


def parse_question(payload: bytes) -> tuple[str, str] | None:
    if len(payload) < 12:
        return None
    flags = int.from_bytes(payload[2:4], "big")
    qdcount = int.from_bytes(payload[4:6], "big")
    if flags & 0x8000 or qdcount < 1:  # a response, or no question
        return None
    labels: list[str] = []
    pos = 12
    while True:
        if pos >= len(payload):
            return None
        n = payload[pos]
        pos += 1
        if n == 0:
            break
        if n > 63 or pos + n > len(payload):
            return None
        labels.append(payload[pos : pos + n].decode("ascii", "replace").lower())
        pos += n
    if pos + 2 > len(payload) or not labels:
        return None
    qtype = int.from_bytes(payload[pos : pos + 2], "big")
    return ".".join(labels), QTYPES.get(qtype, f"TYPE{qtype}")


def build_query(name: str, qtype: int = 1, txid: int = 0x1234) -> bytes:
    """A standard query (tests and the synthetic source)."""
    header = txid.to_bytes(2, "big") + b"\x01\x00" + b"\x00\x01" + b"\x00\x00" * 3
    qname = b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"
    return header + qname + qtype.to_bytes(2, "big") + b"\x00\x01"
