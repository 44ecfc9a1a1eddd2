"""Every adopted federated head, kept in the data dir by digest, so an old record stays verifiable.

Layout (``<data_dir>/federated-heads/``, 0700; files 0600, written to a temporary name and renamed):

- ``<digest>.npy``: the head as one little-endian float64 vector, weights then bias
  (``np.load(..., allow_pickle=False)``; no pickle);
- ``<digest>.json``: modality, base model id (the ``.tflite``'s SHA-256), served model id
  (SHA-256(base model id || digest), what a diagnosis record names), the round that adopted
  it, when, and the SHA-256 of the ``.npy``;
- ``current.json``: the last adopted head per modality (what the node serves after a restart).

Loading re-checks the ``.npy`` SHA-256 and recomputes the head digest: a damaged or swapped
file is refused (``damaged-head``), never served.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from diagnostics.errors import DiagnosisError
from diagnostics.federated import Head, ServedHead, compute_served_model_id
from diagnostics.plugin import DiagnosticPlugin, HeadServingPlugin
from node.http import API_PREFIX, ApiError, json_reply
from node.keys import CONFIG

log = logging.getLogger("lungledger.federated")
HEADS_DIR = "federated-heads"
CURRENT_FILE = "current.json"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
MAX_HEAD_FILE_BYTES = 1 << 20  # a 1280-d head is ~10 KiB; refuse anything absurd before reading it
DIGEST_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class HeadStoreError(ValueError):
    """A head that cannot be stored or loaded; ``code`` is a stable reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StoredHead:
    """An adopted head and where it came from."""

    modality: str
    base_model_id: str
    head: Head
    round_id: str | None
    adopted_ms: int

    @property
    def digest(self) -> str:
        return self.head.digest()

    @property
    def served_model_id(self) -> str:
        return compute_served_model_id(self.base_model_id, self.digest)

    def to_served(self) -> ServedHead:
        return ServedHead(self.base_model_id, self.head)

    def describe(self) -> dict[str, Any]:
        return {"digest": self.digest, "modality": self.modality, "base_model_id": self.base_model_id,
                "served_model_id": self.served_model_id, "round_id": self.round_id, "adopted_ms": self.adopted_ms,
                "features": int(self.head.weights.size)}

    def to_json(self) -> dict[str, Any]:
        """Everything an auditor needs to recompute the digest and the served id (floats round-trip exactly)."""
        return {**self.describe(), "weights": [float(value) for value in self.head.weights],
                "bias": self.head.bias, "digest_rule": "SHA-256(b'lungledger-head-v1\\x00' || weights || bias), "
                                                       "little-endian float64"}


def is_digest(text: str) -> bool:
    return bool(DIGEST_PATTERN.match(text))


class HeadStore:
    """Adopted heads on disk; called from a thread (small files, but never on the event loop)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def save(self, stored: StoredHead, current: bool = True) -> None:
        """Write the head (if new) and, unless ``current`` is False, make it the current one of its modality."""
        os.makedirs(self.directory, mode=PRIVATE_DIR_MODE, exist_ok=True)
        digest = stored.digest
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate([stored.head.weights, [stored.head.bias]]).astype("<f8"), allow_pickle=False)
        array_bytes = buffer.getvalue()
        meta = {**stored.describe(), "npy_sha256": hashlib.sha256(array_bytes).hexdigest()}
        if not (self.directory / f"{digest}.json").exists():
            self._write(f"{digest}.npy", array_bytes)
            self._write(f"{digest}.json", json.dumps(meta, sort_keys=True, indent=1).encode())
        if current:
            latest = self._read_current()
            latest[stored.modality] = digest
            self._write(CURRENT_FILE, json.dumps(latest, sort_keys=True).encode())

    def load(self, digest: str) -> StoredHead | None:
        """The head with that digest, None if this node never adopted it; raises ``damaged-head``."""
        if not is_digest(digest) or not (self.directory / f"{digest}.json").exists():
            return None
        try:
            meta = json.loads(self._read(f"{digest}.json"))
            array_bytes = self._read(f"{digest}.npy")
            if hashlib.sha256(array_bytes).hexdigest() != meta["npy_sha256"]:
                raise HeadStoreError("damaged-head", f"{digest}.npy does not match the SHA-256 in {digest}.json")
            values = np.load(io.BytesIO(array_bytes), allow_pickle=False)
            if values.dtype != np.dtype("<f8") or values.ndim != 1 or values.size < 2:
                raise HeadStoreError("damaged-head", f"{digest}.npy is not a float64 vector")
            stored = StoredHead(str(meta["modality"]), str(meta["base_model_id"]),
                                Head.create(values[:-1], float(values[-1])), meta.get("round_id"),
                                int(meta["adopted_ms"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            if isinstance(error, HeadStoreError):
                raise
            raise HeadStoreError("damaged-head", f"cannot read head {digest}: {error}") from error
        if stored.digest != digest:
            raise HeadStoreError("damaged-head", f"the stored head's digest is {stored.digest}, not {digest}")
        return stored

    def load_current(self, modality: str) -> StoredHead | None:
        """The last head adopted for ``modality`` (None: none yet, serve the built-in head)."""
        digest = self._read_current().get(modality)
        return None if digest is None else self.load(str(digest))

    def list_heads(self) -> list[dict[str, Any]]:
        """Every stored head's description, oldest adoption first (unreadable ones are skipped)."""
        found = []
        for path in sorted(self.directory.glob("*.json")) if self.directory.is_dir() else []:
            if is_digest(path.stem):
                try:
                    stored = self.load(path.stem)
                except HeadStoreError:
                    continue
                if stored is not None:
                    found.append(stored.describe())
        return sorted(found, key=lambda item: (item["adopted_ms"], item["digest"]))

    def _read_current(self) -> dict[str, str]:
        try:
            current = json.loads(self._read(CURRENT_FILE))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise HeadStoreError("damaged-head", f"cannot read {CURRENT_FILE}: {error}") from error
        if not isinstance(current, dict):
            raise HeadStoreError("damaged-head", f"{CURRENT_FILE} is not an object")
        return {str(key): str(value) for key, value in current.items()}

    def _read(self, name: str) -> bytes:
        path = self.directory / name
        if path.stat().st_size > MAX_HEAD_FILE_BYTES:
            raise HeadStoreError("damaged-head", f"{name} is larger than {MAX_HEAD_FILE_BYTES} bytes")
        return path.read_bytes()

    def _write(self, name: str, data: bytes) -> None:
        temporary = self.directory / f"{name}.tmp"
        descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, PRIVATE_FILE_MODE)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(self.directory / name)


def load_servable(store: HeadStore, modality: str, model_id: str) -> StoredHead | None:
    """The last head adopted for ``modality`` if it was trained on ``model_id`` (else None: the built-in head)."""
    try:
        stored = store.load_current(modality)
    except HeadStoreError as error:
        log.error("not serving the last adopted %s head: %s", modality, error)
        return None
    if stored is not None and stored.base_model_id != model_id:
        log.warning("the last adopted %s head %s was trained on another model; serving the built-in head",
                    modality, stored.digest[:16])
        return None
    return stored


def serve_stored(plugin: DiagnosticPlugin | None, stored: StoredHead) -> bool:
    """Hand an adopted head to the plug-in; False (logged) when it cannot serve it."""
    if not isinstance(plugin, HeadServingPlugin):
        log.warning("adopted head %s stored; the diagnostic plug-in cannot serve it", stored.digest[:16])
        return False
    try:
        plugin.serve_head(stored.modality, stored.to_served())
    except DiagnosisError as error:
        log.warning("adopted head %s not served: %s", stored.digest[:16], error)
        return False
    log.info("serving the adopted %s head %s (model id %s)", stored.modality, stored.digest[:16],
             stored.served_model_id[:16])
    return True


HEAD_STORE: web.AppKey[HeadStore] = web.AppKey("federated_heads", HeadStore)


async def get_heads(request: web.Request) -> web.Response:
    """Every head this node adopted: digest, modality, base and served model ids, round, time."""
    heads = await asyncio.to_thread(request.app[HEAD_STORE].list_heads)
    return json_reply({"heads": heads})


async def get_head(request: web.Request) -> web.Response:
    """One adopted head by digest, weights included, so an auditor can recompute a record's model id."""
    digest = request.match_info["digest"].lower()
    if not is_digest(digest):
        raise ApiError(400, "bad-digest", "a head digest is 64 hexadecimal characters")
    try:
        stored = await asyncio.to_thread(request.app[HEAD_STORE].load, digest)
    except HeadStoreError as error:
        raise ApiError(500, error.code, error.message) from error
    if stored is None:
        raise ApiError(404, "unknown-head", f"this node never adopted a head {digest}")
    return json_reply(stored.to_json())


def setup_head_routes(app: web.Application) -> None:
    """The store lives in the data dir whether or not the node federates (old records stay checkable)."""
    app[HEAD_STORE] = HeadStore(app[CONFIG].data_dir / HEADS_DIR)
    app.router.add_get(f"{API_PREFIX}/federated/heads", get_heads)
    app.router.add_get(f"{API_PREFIX}/federated/heads/{{digest}}", get_head)
