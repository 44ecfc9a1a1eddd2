"""Canonical msgpack encoding.

Objects are encoded as msgpack arrays with a fixed field order (no maps, so
no key-order ambiguity). Decoding is strict: size-limited, no trailing bytes,
no extension types, and the bytes must re-encode to exactly themselves, which
rejects every non-minimal integer or length encoding.
"""

from __future__ import annotations

from typing import Any

import msgpack

from consensus.errors import ValidationError


def pack(value: Any) -> bytes:
    """Encode a tree of ints, bytes, str, bool, None and lists canonically."""
    packed: bytes = msgpack.packb(value, use_bin_type=True, strict_types=False)
    return packed


def unpack(data: bytes, max_bytes: int) -> Any:
    """Decode canonical bytes or raise ValidationError('bad-encoding')."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValidationError("bad-encoding", "expected bytes")
    if len(data) > max_bytes:
        raise ValidationError("block-too-large", f"{len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=0,
            max_ext_len=0,
        )
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError) as error:
        raise ValidationError("bad-encoding", f"undecodable msgpack: {error}") from error
    if pack(value) != bytes(data):
        raise ValidationError("bad-encoding", "not the canonical encoding")
    return value


def expect_list(value: Any, length: int, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != length:
        raise ValidationError("bad-encoding", f"{what}: expected an array of {length} fields")
    return value


def expect_int(value: Any, what: str, low: int = 0, high: int = 2**63 - 1) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValidationError("bad-encoding", f"{what}: expected an integer in [{low}, {high}]")
    return value


def expect_bytes(value: Any, what: str, length: int | None = None, max_length: int = 1 << 20) -> bytes:
    if not isinstance(value, bytes):
        raise ValidationError("bad-encoding", f"{what}: expected bytes")
    if length is not None and len(value) != length:
        raise ValidationError("bad-encoding", f"{what}: expected {length} bytes, got {len(value)}")
    if len(value) > max_length:
        raise ValidationError("bad-encoding", f"{what}: longer than {max_length} bytes")
    return value


def expect_str(value: Any, what: str, max_length: int = 256, choices: frozenset[str] | None = None) -> str:
    if not isinstance(value, str) or len(value) > max_length:
        raise ValidationError("bad-encoding", f"{what}: expected a string of at most {max_length} characters")
    if choices is not None and value not in choices:
        raise ValidationError("bad-encoding", f"{what}: {value!r} is not one of {sorted(choices)}")
    return value


def expect_array(value: Any, what: str, max_items: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_items:
        raise ValidationError("bad-encoding", f"{what}: expected an array of at most {max_items} items")
    return value
