"""The signer limit's arithmetic (consensus/signers.py)."""

import pytest

from consensus.signers import may_sign, signer_limit

A, B, C, D = b"a" * 16, b"b" * 16, b"c" * 16, b"d" * 16


@pytest.mark.parametrize(("members", "limit"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (64, 33)])
def test_signer_limit_is_a_majority_of_members(members: int, limit: int) -> None:
    assert signer_limit(members) == limit


def test_no_members_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        signer_limit(0)


def test_a_single_member_chain_signs_every_block() -> None:
    assert may_sign(A, [A, A, A], 1)


def test_two_members_alternate() -> None:
    assert not may_sign(A, [A], 2)
    assert may_sign(A, [B, A], 2)
    assert may_sign(A, [], 2)


def test_three_members_never_sign_twice_in_a_row() -> None:
    assert not may_sign(A, [A, B], 3)
    assert may_sign(A, [B, A], 3)


def test_the_window_grows_with_the_members() -> None:
    assert not may_sign(A, [B, A, C], 4)  # limit 3: A signed one of the last 2
    assert may_sign(A, [B, C, A], 4)
    assert not may_sign(D, [D], 5)
