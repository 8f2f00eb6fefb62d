"""Personal data at rest: AES-256-GCM (cryptography's AESGCM) per field, bound to its
row and field by the associated data, with the id of the key that sealed it kept next to
it so that keys can rotate; and a blind index (HMAC-SHA256) to find a row by a value
without storing the value (a user by email, case-blind).

Key material comes from settings: PAYSYS_DATA_KEYS = "id:base64(32 bytes),..." with
PAYSYS_DATA_KEY_ID naming the one that seals new data, and PAYSYS_BLIND_INDEX_KEY.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class DataKeyError(ValueError):
    """Key settings that cannot work (unknown id, wrong length)."""


def parse_keys(spec: str) -> dict[str, bytes]:
    keys = {}
    for part in spec.split(","):
        key_id, _, material = part.strip().partition(":")
        raw = base64.b64decode(material)
        if not key_id or len(raw) != 32:
            raise DataKeyError("each data key is id:base64 of 32 bytes")
        keys[key_id] = raw
    return keys


@dataclass(frozen=True)
class Sealed:
    key_id: str
    blob: bytes  # nonce + ciphertext with its tag


class FieldCipher:
    def __init__(self, keys: dict[str, bytes], current: str, index_key: bytes) -> None:
        if current not in keys:
            raise DataKeyError(f"the current data key {current!r} is not among the keys")
        self._aead = {key_id: AESGCM(raw) for key_id, raw in keys.items()}
        self.current = current
        self._index_key = index_key

    def seal(self, value: str, context: str) -> bytes:
        """`value` under the current key; `context` (e.g. "users.email:<id>") must be the
        same to open it, so a ciphertext moved to another row or field does not open."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead[self.current].encrypt(nonce, value.encode(), context.encode())

    def open(self, blob: bytes, key_id: str, context: str) -> str:
        aead = self._aead.get(key_id)
        if aead is None:
            raise DataKeyError(f"data key {key_id!r} is not configured")
        nonce, sealed = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
        return aead.decrypt(nonce, sealed, context.encode()).decode()

    def blind_index(self, value: str) -> str:
        """The same for the same value (case-blind), useless without the index key."""
        digest = hmac.new(self._index_key, value.strip().lower().encode(), hashlib.sha256)
        return digest.hexdigest()


def cipher_from(keys: str, current: str, index_key: str) -> FieldCipher:
    return FieldCipher(parse_keys(keys), current, base64.b64decode(index_key))


# Local development keys: public (in this repository), refused outside local and test.
DEV_DATA_KEYS = "dev1:" + base64.b64encode(b"local-dev-only-data-key-32-bytes").decode()
DEV_BLIND_INDEX_KEY = base64.b64encode(b"local-dev-only-blind-index-key!!").decode()
