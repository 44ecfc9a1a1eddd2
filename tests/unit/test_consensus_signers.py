"""The signer limit's arithmetic (consensus/signers.py)."""

import pytest

from consensus.signers import compute_turn_rank, may_sign, signer_limit

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


def test_turn_rank_starts_at_the_height_and_skips_members_that_may_not_sign() -> None:
    members = [A, B, C]
    assert compute_turn_rank(B, [], members, 1) == 0  # height 1: B is in turn
    assert compute_turn_rank(C, [], members, 1) == 1
    assert compute_turn_rank(A, [], members, 1) == 2
    assert compute_turn_rank(B, [B], members, 1) is None  # signed the parent: not in line
    assert compute_turn_rank(C, [B], members, 1) == 0  # the in-turn member is skipped, C moves up
    assert compute_turn_rank(A, [A], [A], 7) == 0  # one member: always in turn
