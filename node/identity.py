"""Node identity on disk: the Ed25519 key pair, the display name, the API token.

``init`` writes ``node.key`` (PKCS#8 PEM, mode 0600), ``node.json`` (public
key, member id, name) and ``api_token`` (mode 0600) into the data directory.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consensus.crypto import compute_member_id
from consensus.types import Member

KEY_FILE = "node.key"
INFO_FILE = "node.json"
TOKEN_FILE = "api_token"


@dataclass(frozen=True)
class NodeIdentity:
    private_key: Ed25519PrivateKey
    name: str
    api_token: str

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def member_id(self) -> bytes:
        return compute_member_id(self.public_key)

    @property
    def member(self) -> Member:
        return Member(public_key=self.public_key, name=self.name)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def init_identity(data_dir: Path, name: str) -> NodeIdentity:
    """Create keys and token in ``data_dir``; refuse to overwrite an existing key."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if (data_dir / KEY_FILE).exists():
        raise FileExistsError(f"{data_dir / KEY_FILE} already exists; refusing to replace a node's key")
    identity = NodeIdentity(Ed25519PrivateKey.generate(), name, secrets.token_urlsafe(32))
    pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(data_dir / KEY_FILE, pem)
    _write_private(data_dir / TOKEN_FILE, identity.api_token.encode())
    info = {"name": name, "public_key": identity.public_key.hex(), "member_id": identity.member_id.hex()}
    (data_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return identity


def load_identity(data_dir: Path) -> NodeIdentity:
    key_path = data_dir / KEY_FILE
    if not key_path.exists():
        raise FileNotFoundError(f"no node key at {key_path}; run `run_node.py init --data-dir {data_dir}` first")
    private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ValueError(f"{key_path} is not an Ed25519 private key")
    info = json.loads((data_dir / INFO_FILE).read_text())
    token = (data_dir / TOKEN_FILE).read_text().strip()
    return NodeIdentity(private_key, str(info["name"]), token)
