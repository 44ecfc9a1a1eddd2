"""Peer messages: frozen containers with a strict wire schema.

A frame is the canonical msgpack encoding of ``[type, [field, ...]]`` (see
docs/PROTOCOL.md). Each message declares its fields once, in a ``FIELDS``
table (consensus/encoding.py), from which ``to_fields()`` and the strict
``from_fields()`` come. Blocks and headers travel as their own canonical
bytes and are decoded by consensus/, never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from consensus.crypto import MEMBER_ID_BYTES, SIGNATURE_BYTES
from consensus.encoding import Bin, Canonical, Field, Int, ListOf, Nested, Str
from consensus.types import HASH_BYTES, MAX_BLOCK_BYTES, MAX_RECORD_BYTES
from network.constants import (
    MAX_BLOCKS_PER_REQUEST,
    MAX_HEADER_BYTES,
    MAX_HEADERS_PER_MESSAGE,
    MAX_HOST_CHARS,
    MAX_LOCATOR_HASHES,
    MAX_PEERS_PER_MESSAGE,
    MAX_RECORDS_PER_MESSAGE,
    MAX_USER_AGENT_CHARS,
    NONCE_BYTES,
)
from network.model_messages import GetHead, HeadNotFound, HeadReply, ModelMetrics, ModelRound, ModelUpdate

MAX_U64 = 2**64 - 1
HASH = Bin(HASH_BYTES)


@dataclass(frozen=True)
class Hello(Canonical):
    TYPE: ClassVar[str] = "hello"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("version", Int(0, 2**32 - 1)),
        Field("chain_id", HASH),
        Field("member_id", Bin(MEMBER_ID_BYTES)),
        Field("nonce", Bin(NONCE_BYTES)),
        Field("listen_port", Int(0, 65535)),
        Field("best_height", Int()),
        Field("user_agent", Str(MAX_USER_AGENT_CHARS)),
        Field("mines", Int(0, 1)),
    )
    version: int
    chain_id: bytes
    member_id: bytes
    nonce: bytes
    listen_port: int
    best_height: int
    user_agent: str
    mines: int = 1  # 1: this node mines (a carrier in the in-turn line); 0: relay-only, skipped in the line


@dataclass(frozen=True)
class Auth(Canonical):
    TYPE: ClassVar[str] = "auth"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("signature", Bin(SIGNATURE_BYTES)),)
    signature: bytes


@dataclass(frozen=True)
class Announce(Canonical):
    TYPE: ClassVar[str] = "announce"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("block_hash", HASH), Field("height", Int(1)))
    block_hash: bytes
    height: int


@dataclass(frozen=True)
class GetHeaders(Canonical):
    TYPE: ClassVar[str] = "get_headers"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("locator", ListOf(HASH, MAX_LOCATOR_HASHES)),)
    locator: tuple[bytes, ...]


@dataclass(frozen=True)
class Headers(Canonical):
    TYPE: ClassVar[str] = "headers"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("headers", ListOf(Bin(max_length=MAX_HEADER_BYTES), MAX_HEADERS_PER_MESSAGE)),
    )
    headers: tuple[bytes, ...]


@dataclass(frozen=True)
class GetBlocks(Canonical):
    TYPE: ClassVar[str] = "get_blocks"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("hashes", ListOf(HASH, MAX_BLOCKS_PER_REQUEST)),)
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class Blocks(Canonical):
    TYPE: ClassVar[str] = "blocks"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("blocks", ListOf(Bin(max_length=MAX_BLOCK_BYTES), MAX_BLOCKS_PER_REQUEST)),
    )
    blocks: tuple[bytes, ...]


@dataclass(frozen=True)
class NotFound(Canonical):
    TYPE: ClassVar[str] = "not_found"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("hashes", ListOf(HASH, MAX_BLOCKS_PER_REQUEST)),)
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class Records(Canonical):
    """Pending records relayed to a peer, each as its own canonical bytes (decoded by consensus/)."""

    TYPE: ClassVar[str] = "records"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("records", ListOf(Bin(max_length=MAX_RECORD_BYTES), MAX_RECORDS_PER_MESSAGE)),
    )
    records: tuple[bytes, ...]


@dataclass(frozen=True)
class GetPeers(Canonical):
    TYPE: ClassVar[str] = "get_peers"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = ()


@dataclass(frozen=True)
class PeerAddress(Canonical):
    WIRE_NAME: ClassVar[str] = "peer"
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("host", Str(MAX_HOST_CHARS)),
        Field("port", Int(1, 65535)),
        Field("member_id", Bin(MEMBER_ID_BYTES)),
    )
    host: str
    port: int
    member_id: bytes


@dataclass(frozen=True)
class Peers(Canonical):
    TYPE: ClassVar[str] = "peers"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("peers", ListOf(Nested(PeerAddress), MAX_PEERS_PER_MESSAGE)),)
    peers: tuple[PeerAddress, ...]


@dataclass(frozen=True)
class Ping(Canonical):
    TYPE: ClassVar[str] = "ping"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("nonce", Int(0, MAX_U64)),)
    nonce: int


@dataclass(frozen=True)
class Pong(Canonical):
    TYPE: ClassVar[str] = "pong"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("nonce", Int(0, MAX_U64)),)
    nonce: int


Message = (Hello | Auth | Announce | GetHeaders | Headers | GetBlocks | Blocks | NotFound | GetPeers | Peers | Ping | Pong
           | Records | ModelRound | ModelUpdate | ModelMetrics | GetHead | HeadReply | HeadNotFound)

MESSAGE_TYPES: dict[str, Any] = {
    cls.TYPE: cls
    for cls in (Hello, Auth, Announce, GetHeaders, Headers, GetBlocks, Blocks, NotFound, GetPeers, Peers, Ping, Pong,
                Records, ModelRound, ModelUpdate, ModelMetrics, GetHead, HeadReply, HeadNotFound)
}
