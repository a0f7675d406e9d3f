"""Deterministic traffic and rollout bucketing, shared by the SDK and the server's simulator.

``bucket(salt, key)`` maps a request key to a number in [0, 1) that is stable for the same salt and key, so
one user keeps the same answer for a traffic fraction or a rolling-out candidate. The formula is a public
seam (docs/architecture.md); the server and every SDK must compute exactly this.
"""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def bucket(salt: str, key: str) -> float:
    """A number in [0, 1) for `key` under `salt`: blake2b-64 of ``f"{salt}\\x00{key}"`` over 2**64."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def admitted(control_id: int, admit: float, key: str | None) -> bool:
    """Whether a `traffic` control with fraction `admit` lets the request with `key` through."""
    if key is None:
        return admit >= 1.0
    return bucket(f"traffic:{control_id}", key) < admit


def serves_candidate(kind: str, name: str, fraction: float, key: str | None) -> bool:
    """Whether the request with `key` gets the rolling-out candidate of config `kind/name`."""
    if key is None:
        return fraction >= 1.0
    return bucket(f"{kind}/{name}", key) < fraction
