"""Ed25519 identities: member ids, signing and verification.

Signing is deterministic (RFC 8032), so it is allowed in the pure layer; key
generation (randomness) lives in node/.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MEMBER_ID_BYTES = 16
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64

# Domain separation: a signature made for one purpose can never be replayed
# as another.
BLOCK_DOMAIN = b"lungledger/block/v1\x00"
RECORD_DOMAIN = b"lungledger/record/v1\x00"
HANDSHAKE_DOMAIN = b"lungledger/handshake/v1\x00"


def compute_member_id(public_key: bytes) -> bytes:
    """Member id = first 16 bytes of SHA-256(raw 32-byte Ed25519 public key)."""
    return hashlib.sha256(public_key).digest()[:MEMBER_ID_BYTES]


@lru_cache(maxsize=1024)
def _load_public_key(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def is_signature_valid(public_key: bytes, signature: bytes, domain: bytes, message: bytes) -> bool:
    try:
        _load_public_key(public_key).verify(signature, domain + message)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign(private_key: Ed25519PrivateKey, domain: bytes, message: bytes) -> bytes:
    return private_key.sign(domain + message)
