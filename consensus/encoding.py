"""Canonical msgpack encoding and the field tables of every chain and wire type.

Objects are encoded as msgpack arrays with a fixed field order (no maps, so
no key-order ambiguity). Decoding is strict: size-limited, no trailing bytes,
no extension types, and the bytes must re-encode to exactly themselves, which
rejects every non-minimal integer or length encoding.

Each container declares its fields once, in wire order, as a ``FIELDS`` table
of :class:`Field` (name and kind: :class:`Bin`, :class:`Int`, :class:`Str`,
:class:`ListOf`, :class:`TupleOf`, :class:`Nested`, each with its limits). The :class:`Canonical`
base derives ``to_fields()`` and a strict ``from_fields()`` (exact arity, types,
sizes; ``bad-encoding`` on anything else) from that table; a type with rules
across fields (parallel arrays, a non-empty member list) adds them in
``check_fields``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self

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


class Kind(Protocol):
    """How one field is checked on decode and shaped on encode."""

    @property
    def plain(self) -> bool:
        """True when the Python value is already its wire form (encode is the identity)."""
        ...

    def decode(self, value: Any, what: str) -> Any: ...

    def encode(self, value: Any) -> Any: ...


@dataclass(frozen=True)
class Bin:
    """A byte string: exactly ``length`` bytes, or at most ``max_length``."""

    length: int | None = None
    max_length: int = 1 << 20

    def decode(self, value: Any, what: str) -> bytes:
        return expect_bytes(value, what, self.length, self.max_length)

    plain: ClassVar[bool] = True

    def encode(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class Int:
    """An integer (never a bool) in ``[low, high]``."""

    low: int = 0
    high: int = 2**63 - 1

    def decode(self, value: Any, what: str) -> int:
        return expect_int(value, what, self.low, self.high)

    plain: ClassVar[bool] = True

    def encode(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class Str:
    """A string of at most ``max_length`` characters, optionally one of ``choices``."""

    max_length: int = 256
    choices: frozenset[str] | None = None

    def decode(self, value: Any, what: str) -> str:
        return expect_str(value, what, self.max_length, self.choices)

    plain: ClassVar[bool] = True

    def encode(self, value: Any) -> Any:
        return value


@dataclass(frozen=True)
class ListOf:
    """An array of at most ``max_items`` items of one kind; a tuple in Python."""

    item: Kind
    max_items: int

    def decode(self, value: Any, what: str) -> tuple[Any, ...]:
        item = self.item
        return tuple(item.decode(v, what) for v in expect_array(value, what, self.max_items))

    plain: ClassVar[bool] = False

    def encode(self, value: Any) -> Any:
        item = self.item
        if item.plain:
            return list(value)
        return [item.encode(v) for v in value]


@dataclass(frozen=True)
class TupleOf:
    """A fixed array of named parts, each of its own kind; a plain tuple in Python (a metric, a pair of ids)."""

    parts: tuple[Field, ...]

    def decode(self, value: Any, what: str) -> tuple[Any, ...]:
        items = expect_list(value, len(self.parts), what)
        return tuple(part.kind.decode(v, f"{what}.{part.name}") for part, v in zip(self.parts, items, strict=True))

    plain: ClassVar[bool] = False

    def encode(self, value: Any) -> Any:
        return [part.kind.encode(v) for part, v in zip(self.parts, value, strict=True)]


@dataclass(frozen=True)
class Nested:
    """Another :class:`Canonical` container, as its own array."""

    type: type[Canonical]

    def decode(self, value: Any, what: str) -> Canonical:
        return self.type.from_fields(value)

    plain: ClassVar[bool] = False

    def encode(self, value: Any) -> Any:
        return value.to_fields()


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind


class Canonical:
    """Base of the containers whose wire form is their ``FIELDS`` table.

    ``WIRE_NAME`` prefixes the field names in error messages (``record.label``).
    Subclasses are frozen dataclasses whose attributes are the table's names;
    the table's order, not the attributes', is the order on the wire.
    """

    WIRE_NAME: ClassVar[str]
    FIELDS: ClassVar[tuple[Field, ...]]
    _LABELS: ClassVar[tuple[str, ...]]
    _NAMES: ClassVar[tuple[str, ...]]
    _ENCODERS: ClassVar[tuple[tuple[int, Kind], ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not hasattr(cls, "FIELDS"):
            return  # an abstract base (SignedCanonical): no table of its own
        cls._LABELS = tuple(f"{cls.WIRE_NAME}.{f.name}" for f in cls.FIELDS)
        cls._NAMES = tuple(f.name for f in cls.FIELDS)
        cls._ENCODERS = tuple((i, f.kind) for i, f in enumerate(cls.FIELDS) if not f.kind.plain)

    def to_fields(self) -> list[Any]:
        out = [getattr(self, name) for name in self._NAMES]
        for i, kind in self._ENCODERS:
            out[i] = kind.encode(out[i])
        return out

    @classmethod
    def from_fields(cls, value: Any) -> Self:
        fields = cls.FIELDS
        items = expect_list(value, len(fields), cls.WIRE_NAME)
        values = {f.name: f.kind.decode(v, label) for f, v, label in zip(fields, items, cls._LABELS, strict=True)}
        cls.check_fields(values)
        return cls(**values)

    @classmethod
    def check_fields(cls, values: dict[str, Any]) -> None:
        """Rules across fields, run after each field passed its own; raise ValidationError."""


class SignedCanonical(Canonical):
    """A ``Canonical`` whose last field is a signature over the msgpack array of all the others."""

    def unsigned_fields(self) -> list[Any]:
        return encode_fields(self, self.FIELDS[:-1])

    def signed_bytes(self) -> bytes:
        return pack(self.unsigned_fields())


def encode_fields(value: object, fields: tuple[Field, ...]) -> list[Any]:
    """The msgpack array of ``fields`` of ``value``, in table order."""
    return [f.kind.encode(getattr(value, f.name)) for f in fields]
