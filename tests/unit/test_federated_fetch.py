"""The head-fetch reply check (issue 15): only the head asked for, of the model's shape, is accepted.

A peer's ``head`` reply is checked against the digest asked for (the digest function of the
round result, ``Head.digest``) and the model's shape; each refusal is a protocol violation with
its own reason code (the network bans the sender like any other invalid data). The messages
themselves decode strictly and are size-limited to the head limit.
"""

from __future__ import annotations

import numpy as np
import pytest

from consensus.encoding import pack
from diagnostics.federated import Head
from network.codec import decode_message, encode_message
from network.constants import MAX_HEAD_BYTES, MAX_HEAD_FEATURES
from network.errors import MalformedFrame, ProtocolViolation
from network.model_messages import GetHead, HeadNotFound, HeadReply
from node.federated_fetch import check_head_reply

FEATURES = 16
HEAD = Head.create(np.linspace(-1.0, 1.0, FEATURES), 0.25)
DIGEST = bytes.fromhex(HEAD.digest())


def test_the_head_asked_for_is_accepted() -> None:
    head = check_head_reply(DIGEST, HeadReply(DIGEST, HEAD.to_bytes()), FEATURES)
    assert head.digest() == HEAD.digest()
    np.testing.assert_array_equal(head.weights, HEAD.weights)
    assert head.bias == HEAD.bias


def test_a_head_whose_bytes_hash_to_another_digest_is_refused() -> None:
    other = Head.create(HEAD.weights * 2.0, HEAD.bias)
    with pytest.raises(ProtocolViolation) as refused:
        check_head_reply(DIGEST, HeadReply(DIGEST, other.to_bytes()), FEATURES)
    assert refused.value.reason == "bad-head-digest"
    flipped = bytearray(HEAD.to_bytes())
    flipped[3] ^= 1
    with pytest.raises(ProtocolViolation) as refused:
        check_head_reply(DIGEST, HeadReply(DIGEST, bytes(flipped)), FEATURES)
    assert refused.value.reason == "bad-head-digest"


def test_a_reply_naming_another_digest_is_refused() -> None:
    other = Head.create(HEAD.weights, 1.0)
    with pytest.raises(ProtocolViolation) as refused:
        check_head_reply(DIGEST, HeadReply(bytes.fromhex(other.digest()), other.to_bytes()), FEATURES)
    assert refused.value.reason == "bad-head-digest"


@pytest.mark.parametrize("features", [FEATURES - 1, FEATURES + 1, 0])
def test_a_head_of_another_shape_is_refused_even_with_its_own_digest(features: int) -> None:
    wrong = Head.create(np.ones(features), 0.5)
    digest = bytes.fromhex(wrong.digest())
    with pytest.raises(ProtocolViolation) as refused:
        check_head_reply(digest, HeadReply(digest, wrong.to_bytes()), FEATURES)
    assert refused.value.reason == "bad-head-shape"
    with pytest.raises(ProtocolViolation) as refused:  # truncated bytes
        check_head_reply(DIGEST, HeadReply(DIGEST, HEAD.to_bytes()[:-3]), FEATURES)
    assert refused.value.reason == "bad-head-shape"


def test_a_head_with_non_finite_values_is_refused() -> None:
    weights = HEAD.weights.copy()
    weights[2] = np.nan
    poisoned = Head.create(weights, HEAD.bias)
    digest = bytes.fromhex(poisoned.digest())
    with pytest.raises(ProtocolViolation) as refused:
        check_head_reply(digest, HeadReply(digest, poisoned.to_bytes()), FEATURES)
    assert refused.value.reason == "non-finite-head"
    infinite = Head.create(HEAD.weights, float("inf"))
    digest = bytes.fromhex(infinite.digest())
    with pytest.raises(ProtocolViolation) as refused:
        check_head_reply(digest, HeadReply(digest, infinite.to_bytes()), FEATURES)
    assert refused.value.reason == "non-finite-head"


def test_the_messages_decode_strictly_and_are_size_limited() -> None:
    for message in (GetHead(DIGEST), HeadReply(DIGEST, HEAD.to_bytes()), HeadNotFound(DIGEST)):
        assert decode_message(encode_message(message)) == message
    largest = HeadReply(DIGEST, bytes(MAX_HEAD_BYTES))
    assert decode_message(encode_message(largest)) == largest
    assert MAX_HEAD_BYTES == 8 * (MAX_HEAD_FEATURES + 1)
    bad_frames = [
        pack(["head", [DIGEST, bytes(MAX_HEAD_BYTES + 1)]]),  # over the head limit
        pack(["get_head", [DIGEST[:31]]]),  # a digest is 32 bytes
        pack(["head_not_found", [DIGEST, DIGEST]]),  # wrong arity
        pack(["head", [DIGEST]]),
        pack(["get_head", ["00" * 32]]),  # a str for bytes
    ]
    for frame in bad_frames:
        with pytest.raises(MalformedFrame):
            decode_message(frame)
