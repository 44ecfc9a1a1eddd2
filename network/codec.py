"""Frames <-> messages: size limit first, then strict canonical msgpack, then the schema."""

from __future__ import annotations

from consensus.encoding import expect_list, expect_str, pack, unpack
from consensus.errors import ValidationError
from network.constants import MAX_FRAME_BYTES, MAX_MESSAGE_TYPE_CHARS
from network.errors import MalformedFrame, OversizedFrame
from network.messages import MESSAGE_TYPES, Message


def encode_message(message: Message) -> bytes:
    frame = pack([message.TYPE, message.to_fields()])
    if len(frame) > MAX_FRAME_BYTES:
        raise ValueError(f"{message.TYPE} frame of {len(frame)} bytes exceeds MAX_FRAME_BYTES")
    return frame


def decode_message(frame: bytes) -> Message:
    """Decode one frame or raise OversizedFrame / MalformedFrame."""
    if len(frame) > MAX_FRAME_BYTES:
        raise OversizedFrame(len(frame), MAX_FRAME_BYTES)
    try:
        message_type, fields = expect_list(unpack(frame, MAX_FRAME_BYTES), 2, "frame")
        cls = MESSAGE_TYPES.get(expect_str(message_type, "frame.type", MAX_MESSAGE_TYPE_CHARS))
        if cls is None:
            raise MalformedFrame(f"unknown message type {message_type!r}")
        return cls.from_fields(fields)  # type: ignore[no-any-return]
    except ValidationError as error:
        raise MalformedFrame(str(error)) from error
