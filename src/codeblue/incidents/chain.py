"""The timeline's HMAC chain: each entry's MAC covers the previous MAC and a canonical encoding of the entry.

``mac_n = HMAC-SHA256(key, "codeblue-timeline-v1" ‖ mac_{n-1} ‖ canonical(entry_n))`` with ``mac_0 = ""``;
the canonical encoding is sorted-key JSON of (incident_id, seq, time, actor, kind, text, data). The incident
row keeps the head (count, last MAC) and a seal, ``HMAC(key, "codeblue-head-v1" ‖ id ‖ count ‖ head)``, so that
deleting the newest entries and rolling the head back is detected too: without the key the seal cannot be
recomputed for an older head.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

_ENTRY_TAG = b"codeblue-timeline-v1\x00"
_SEAL_TAG = b"codeblue-head-v1\x00"


def normalise_data(data: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON round trip of `data`, so the MAC covers exactly what the database gives back."""
    if not data:
        return {}
    try:
        out: dict[str, Any] = orjson.loads(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError) as exc:
        from codeblue.errors import Invalid

        raise Invalid(f"timeline data must be JSON-serialisable: {exc}", field="data") from exc
    return out


def canonical(*, incident_id: int, seq: int, time: float, actor: str, kind: str, text: str,
              data: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"incident_id": incident_id, "seq": seq, "time": float(time), "actor": actor, "kind": kind,
         "text": text, "data": data},
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )


def entry_mac(key: bytes, prev: str, body: bytes) -> str:
    return hmac.new(key, _ENTRY_TAG + prev.encode("ascii") + b"\x00" + body, hashlib.sha256).hexdigest()


def seal(key: bytes, incident_id: int, count: int, head: str) -> str:
    msg = _SEAL_TAG + f"{incident_id}\x00{count}\x00{head}".encode("ascii")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))
