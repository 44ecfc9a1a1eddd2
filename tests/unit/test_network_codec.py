"""Frames: every message round-trips; anything malformed, non-canonical or oversized is refused."""

from __future__ import annotations

import msgpack
import pytest

from consensus.encoding import pack
from network.codec import decode_message, encode_message
from network.constants import MAX_FRAME_BYTES, MAX_HEADERS_PER_MESSAGE, MAX_RECORDS_PER_MESSAGE
from network.errors import MalformedFrame, OversizedFrame
from network.messages import (
    Announce, Auth, Blocks, GetBlocks, GetHeaders, GetPeers, Headers, Hello, NotFound, PeerAddress, Peers, Ping, Pong,
    Records,
)

HASH = bytes(range(32))
EXAMPLES = [
    Hello(1, HASH, bytes(16), bytes(32), 8601, 12, "lungledger/0.1"),
    Auth(bytes(64)),
    Announce(HASH, 5),
    GetHeaders((HASH, bytes(32))),
    Headers((b"\x98" + bytes(20),)),
    GetBlocks((HASH,)),
    Blocks((b"\x93\x01\x02\x03",)),
    NotFound((HASH,)),
    GetPeers(),
    Peers((PeerAddress("127.0.0.1", 8601, bytes(16)),)),
    Ping(2**64 - 1),
    Pong(0),
    Records((b"\x9c" + bytes(40), b"\x9c")),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.TYPE)
def test_every_message_round_trips(message: object) -> None:
    assert decode_message(encode_message(message)) == message  # type: ignore[arg-type]


def test_ping_bytes_are_as_documented() -> None:
    assert encode_message(Ping(7)).hex(" ") == "92 a4 70 69 6e 67 91 07"


@pytest.mark.parametrize("frame", [
    b"",
    b"\xc1",
    b"\x92\xa4ping\x91\x07trailing",
    pack(["ping"]),
    pack(["nonsense", []]),
    pack(["ping", [7, 8]]),
    pack(["ping", ["7"]]),
    pack(["announce", [bytes(31), 1]]),
    pack(["announce", [HASH, 0]]),
    pack(["get_blocks", [[HASH] * 129]]),
    pack(["headers", [[b"x"] * (MAX_HEADERS_PER_MESSAGE + 1)]]),
    pack(["records", [[b"x"] * (MAX_RECORDS_PER_MESSAGE + 1)]]),
    pack(["records", [[bytes(1025)]]]),
    pack(["records", [["not bytes"]]]),
    pack(["records", []]),
    pack(["hello", [1, HASH, bytes(16), bytes(32), 70000, 0, "x"]]),
    msgpack.packb({"ping": [7]}),
], ids=lambda f: f[:12].hex())
def test_malformed_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_message(frame)


def test_non_canonical_integer_is_refused() -> None:
    # 7 as uint16 (0xcd 0x00 0x07) instead of the positive fixint 0x07
    with pytest.raises(MalformedFrame):
        decode_message(b"\x92\xa4ping\x91\xcd\x00\x07")


def test_oversized_frame_is_refused_before_decoding() -> None:
    with pytest.raises(OversizedFrame):
        decode_message(bytes(MAX_FRAME_BYTES + 1))
