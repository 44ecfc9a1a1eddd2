"""Peer messages: frozen containers with a strict wire schema.

A frame is the canonical msgpack encoding of ``[type, [field, ...]]`` (see
docs/PROTOCOL.md). Blocks and headers travel as their own canonical bytes and
are decoded by consensus/, never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from consensus.crypto import MEMBER_ID_BYTES, SIGNATURE_BYTES
from consensus.encoding import expect_array, expect_bytes, expect_int, expect_list, expect_str
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

MAX_U64 = 2**64 - 1


def _hashes(value: Any, what: str, max_items: int) -> tuple[bytes, ...]:
    return tuple(expect_bytes(h, what, HASH_BYTES) for h in expect_array(value, what, max_items))


@dataclass(frozen=True)
class Hello:
    TYPE: ClassVar[str] = "hello"
    version: int
    chain_id: bytes
    member_id: bytes
    nonce: bytes
    listen_port: int
    best_height: int
    user_agent: str

    def to_fields(self) -> list[Any]:
        return [self.version, self.chain_id, self.member_id, self.nonce, self.listen_port, self.best_height, self.user_agent]

    @classmethod
    def from_fields(cls, value: Any) -> Hello:
        f = expect_list(value, 7, "hello")
        return cls(
            expect_int(f[0], "hello.version", 0, 2**32 - 1),
            expect_bytes(f[1], "hello.chain_id", HASH_BYTES),
            expect_bytes(f[2], "hello.member_id", MEMBER_ID_BYTES),
            expect_bytes(f[3], "hello.nonce", NONCE_BYTES),
            expect_int(f[4], "hello.listen_port", 0, 65535),
            expect_int(f[5], "hello.best_height"),
            expect_str(f[6], "hello.user_agent", MAX_USER_AGENT_CHARS),
        )


@dataclass(frozen=True)
class Auth:
    TYPE: ClassVar[str] = "auth"
    signature: bytes

    def to_fields(self) -> list[Any]:
        return [self.signature]

    @classmethod
    def from_fields(cls, value: Any) -> Auth:
        (signature,) = expect_list(value, 1, "auth")
        return cls(expect_bytes(signature, "auth.signature", SIGNATURE_BYTES))


@dataclass(frozen=True)
class Announce:
    TYPE: ClassVar[str] = "announce"
    block_hash: bytes
    height: int

    def to_fields(self) -> list[Any]:
        return [self.block_hash, self.height]

    @classmethod
    def from_fields(cls, value: Any) -> Announce:
        block_hash, height = expect_list(value, 2, "announce")
        return cls(expect_bytes(block_hash, "announce.block_hash", HASH_BYTES), expect_int(height, "announce.height", 1))


@dataclass(frozen=True)
class GetHeaders:
    TYPE: ClassVar[str] = "get_headers"
    locator: tuple[bytes, ...]

    def to_fields(self) -> list[Any]:
        return [list(self.locator)]

    @classmethod
    def from_fields(cls, value: Any) -> GetHeaders:
        (locator,) = expect_list(value, 1, "get_headers")
        return cls(_hashes(locator, "get_headers.locator", MAX_LOCATOR_HASHES))


@dataclass(frozen=True)
class Headers:
    TYPE: ClassVar[str] = "headers"
    headers: tuple[bytes, ...]

    def to_fields(self) -> list[Any]:
        return [list(self.headers)]

    @classmethod
    def from_fields(cls, value: Any) -> Headers:
        (headers,) = expect_list(value, 1, "headers")
        items = expect_array(headers, "headers.headers", MAX_HEADERS_PER_MESSAGE)
        return cls(tuple(expect_bytes(h, "header", max_length=MAX_HEADER_BYTES) for h in items))


@dataclass(frozen=True)
class GetBlocks:
    TYPE: ClassVar[str] = "get_blocks"
    hashes: tuple[bytes, ...]

    def to_fields(self) -> list[Any]:
        return [list(self.hashes)]

    @classmethod
    def from_fields(cls, value: Any) -> GetBlocks:
        (hashes,) = expect_list(value, 1, "get_blocks")
        return cls(_hashes(hashes, "get_blocks.hashes", MAX_BLOCKS_PER_REQUEST))


@dataclass(frozen=True)
class Blocks:
    TYPE: ClassVar[str] = "blocks"
    blocks: tuple[bytes, ...]

    def to_fields(self) -> list[Any]:
        return [list(self.blocks)]

    @classmethod
    def from_fields(cls, value: Any) -> Blocks:
        (blocks,) = expect_list(value, 1, "blocks")
        items = expect_array(blocks, "blocks.blocks", MAX_BLOCKS_PER_REQUEST)
        return cls(tuple(expect_bytes(b, "block", max_length=MAX_BLOCK_BYTES) for b in items))


@dataclass(frozen=True)
class NotFound:
    TYPE: ClassVar[str] = "not_found"
    hashes: tuple[bytes, ...]

    def to_fields(self) -> list[Any]:
        return [list(self.hashes)]

    @classmethod
    def from_fields(cls, value: Any) -> NotFound:
        (hashes,) = expect_list(value, 1, "not_found")
        return cls(_hashes(hashes, "not_found.hashes", MAX_BLOCKS_PER_REQUEST))


@dataclass(frozen=True)
class Records:
    """Pending records relayed to a peer, each as its own canonical bytes (decoded by consensus/)."""

    TYPE: ClassVar[str] = "records"
    records: tuple[bytes, ...]

    def to_fields(self) -> list[Any]:
        return [list(self.records)]

    @classmethod
    def from_fields(cls, value: Any) -> Records:
        (records,) = expect_list(value, 1, "records")
        items = expect_array(records, "records.records", MAX_RECORDS_PER_MESSAGE)
        return cls(tuple(expect_bytes(r, "record", max_length=MAX_RECORD_BYTES) for r in items))


@dataclass(frozen=True)
class GetPeers:
    TYPE: ClassVar[str] = "get_peers"

    def to_fields(self) -> list[Any]:
        return []

    @classmethod
    def from_fields(cls, value: Any) -> GetPeers:
        expect_list(value, 0, "get_peers")
        return cls()


@dataclass(frozen=True)
class PeerAddress:
    host: str
    port: int
    member_id: bytes

    def to_fields(self) -> list[Any]:
        return [self.host, self.port, self.member_id]

    @classmethod
    def from_fields(cls, value: Any) -> PeerAddress:
        host, port, member_id = expect_list(value, 3, "peer address")
        return cls(
            expect_str(host, "peer.host", MAX_HOST_CHARS),
            expect_int(port, "peer.port", 1, 65535),
            expect_bytes(member_id, "peer.member_id", MEMBER_ID_BYTES),
        )


@dataclass(frozen=True)
class Peers:
    TYPE: ClassVar[str] = "peers"
    peers: tuple[PeerAddress, ...]

    def to_fields(self) -> list[Any]:
        return [[p.to_fields() for p in self.peers]]

    @classmethod
    def from_fields(cls, value: Any) -> Peers:
        (peers,) = expect_list(value, 1, "peers")
        return cls(tuple(PeerAddress.from_fields(p) for p in expect_array(peers, "peers.peers", MAX_PEERS_PER_MESSAGE)))


@dataclass(frozen=True)
class Ping:
    TYPE: ClassVar[str] = "ping"
    nonce: int

    def to_fields(self) -> list[Any]:
        return [self.nonce]

    @classmethod
    def from_fields(cls, value: Any) -> Ping:
        (nonce,) = expect_list(value, 1, "ping")
        return cls(expect_int(nonce, "ping.nonce", 0, MAX_U64))


@dataclass(frozen=True)
class Pong:
    TYPE: ClassVar[str] = "pong"
    nonce: int

    def to_fields(self) -> list[Any]:
        return [self.nonce]

    @classmethod
    def from_fields(cls, value: Any) -> Pong:
        (nonce,) = expect_list(value, 1, "pong")
        return cls(expect_int(nonce, "pong.nonce", 0, MAX_U64))


Message = (Hello | Auth | Announce | GetHeaders | Headers | GetBlocks | Blocks | NotFound | GetPeers | Peers | Ping | Pong
           | Records)

MESSAGE_TYPES: dict[str, Any] = {
    cls.TYPE: cls
    for cls in (Hello, Auth, Announce, GetHeaders, Headers, GetBlocks, Blocks, NotFound, GetPeers, Peers, Ping, Pong,
                Records)
}
