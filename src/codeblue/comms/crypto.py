"""Sealing channel secrets at rest with a key derived from the server key (stdlib only).

Encrypt-then-MAC: a keystream of HMAC-SHA256(enc_key, nonce ‖ counter) blocks XORed with the plaintext,
then HMAC-SHA256(mac_key, version ‖ nonce ‖ ciphertext). Both keys are derived from `rt.server_key`, which
never lives in the database, so a copy of the database alone does not reveal SMTP passwords, signing
secrets or routing keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

VERSION = b"cbs1"
_NONCE = 16
_TAG = 32


def _derive(server_key: bytes, purpose: bytes) -> bytes:
    return hmac.new(server_key, b"codeblue/comms/secrets/" + purpose, hashlib.sha256).digest()


def _keystream(key: bytes, nonce: bytes, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
        counter += 1
    return bytes(out[:n])


def seal(server_key: bytes, plaintext: bytes) -> str:
    """Encrypt and authenticate `plaintext`; returns printable text for a database column."""
    nonce = secrets.token_bytes(_NONCE)
    ks = _keystream(_derive(server_key, b"enc"), nonce, len(plaintext))
    ct = bytes(a ^ b for a, b in zip(plaintext, ks, strict=True))
    tag = hmac.new(_derive(server_key, b"mac"), VERSION + nonce + ct, hashlib.sha256).digest()
    return VERSION.decode() + ":" + base64.urlsafe_b64encode(nonce + ct + tag).decode()


def unseal(server_key: bytes, sealed: str) -> bytes:
    """Decrypt what `seal` produced; ValueError when it was tampered with or sealed under another key."""
    prefix, _, payload = sealed.partition(":")
    if prefix.encode() != VERSION:
        raise ValueError("not a sealed secret (unknown format)")
    raw = base64.urlsafe_b64decode(payload.encode())
    if len(raw) < _NONCE + _TAG:
        raise ValueError("sealed secret is truncated")
    nonce, ct, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    want = hmac.new(_derive(server_key, b"mac"), VERSION + nonce + ct, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, want):
        raise ValueError("sealed secret failed authentication (wrong server key or tampered)")
    ks = _keystream(_derive(server_key, b"enc"), nonce, len(ct))
    return bytes(a ^ b for a, b in zip(ct, ks, strict=True))
