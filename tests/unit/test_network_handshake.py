"""Handshake signatures are bound to the chain, both members and both nonces; refusals are not bans."""

from __future__ import annotations

import pytest

from consensus.crypto import HANDSHAKE_DOMAIN, sign
from network.errors import PeerGone
from network.handshake import LocalIdentity, compute_handshake_message, is_auth_valid, make_hello, validate_hello
from network.messages import Auth
from tests.support.builders import make_chain, make_member

ALICE, BOB, OUTSIDER = make_member("Alice", 1), make_member("Bob", 2), make_member("Outsider", 3)
PARAMS, GENESIS = make_chain([ALICE, BOB])
CHAIN_ID = GENESIS.block_hash
ALICE_NONCE, BOB_NONCE = b"a" * 32, b"b" * 32


def local(member=ALICE) -> LocalIdentity:  # type: ignore[no-untyped-def]
    return LocalIdentity(member.key, member.member_id, CHAIN_ID, PARAMS, 8601)


def bob_auth(chain_id: bytes = CHAIN_ID, signer_nonce: bytes = BOB_NONCE, verifier_nonce: bytes = ALICE_NONCE,
             key=BOB.key) -> Auth:  # type: ignore[no-untyped-def]
    message = compute_handshake_message(chain_id, BOB.member_id, ALICE.member_id, signer_nonce, verifier_nonce)
    return Auth(sign(key, HANDSHAKE_DOMAIN, message))


def test_valid_auth_verifies() -> None:
    hello = make_hello(local(BOB), BOB_NONCE, 0)
    assert is_auth_valid(local(), hello, ALICE_NONCE, bob_auth())


@pytest.mark.parametrize("auth", [
    bob_auth(chain_id=bytes(32)),
    bob_auth(signer_nonce=b"c" * 32),
    bob_auth(verifier_nonce=b"c" * 32),
    bob_auth(signer_nonce=ALICE_NONCE, verifier_nonce=BOB_NONCE),
    bob_auth(key=OUTSIDER.key),
], ids=["other-chain", "other-signer-nonce", "replayed-on-another-connection", "nonces-swapped", "wrong-key"])
def test_auth_bound_to_chain_nonces_and_key(auth: Auth) -> None:
    hello = make_hello(local(BOB), BOB_NONCE, 0)
    assert not is_auth_valid(local(), hello, ALICE_NONCE, auth)


def test_hello_refusals() -> None:
    good = make_hello(local(BOB), BOB_NONCE, 0)
    validate_hello(good, local())
    for bad, reason in [
        (make_hello(local(ALICE), BOB_NONCE, 0), "ourselves"),
        (make_hello(LocalIdentity(OUTSIDER.key, OUTSIDER.member_id, CHAIN_ID, PARAMS, 1), BOB_NONCE, 0), "not a consortium member"),
        (make_hello(LocalIdentity(BOB.key, BOB.member_id, bytes(32), PARAMS, 1), BOB_NONCE, 0), "chain"),
    ]:
        with pytest.raises(PeerGone, match=reason):
            validate_hello(bad, local())
