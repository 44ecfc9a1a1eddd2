"""consensus.governance: the round-result record, its validation, and the integer adoption rule."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from consensus.crypto import sign
from consensus.errors import ValidationError
from consensus.governance import RESULT_DOMAIN, RoundResult, compute_adoption, validate_round_result
from diagnostics.federated import AdoptionRule, SiteReport, decide_adoption
from tests.support.builders import make_member

A, B, C = (make_member(name, seed) for seed, name in enumerate(("A", "B", "C")))
MEMBERS = {keys.member_id: keys.member for keys in (A, B, C)}
PARTICIPANTS = sorted(MEMBERS)


def make_result(contributors: list[bytes], excluded: list[tuple[bytes, str]], signer=A) -> RoundResult:  # type: ignore[no-untyped-def]
    unsigned = RoundResult(b"\x07" * 32, signer.member_id, b"\x08" * 32,
                           tuple((member, bytes([index]) * 32) for index, member in enumerate(contributors)),
                           tuple(excluded))
    return replace(unsigned, signature=sign(signer.key, RESULT_DOMAIN, unsigned.signed_bytes()))


def test_a_result_accounting_for_every_participant_is_valid_and_round_trips() -> None:
    first, second, third = PARTICIPANTS
    result = make_result([first, second], [(third, "norm-outlier")])
    validate_round_result(result, PARTICIPANTS, MEMBERS)
    assert RoundResult.from_fields(result.to_fields()) == result


@pytest.mark.parametrize(("build", "code"), [
    (lambda p: make_result([p[1], p[0]], [(p[2], "no-update")]), "bad-round-result"),  # not sorted
    (lambda p: make_result([p[0], p[1]], []), "bad-round-result"),  # a participant unaccounted for
    (lambda p: make_result([p[0], p[1]], [(p[1], "no-update"), (p[2], "no-update")]), "bad-round-result"),
    (lambda p: make_result([], [(p[0], "no-update"), (p[1], "no-update"), (p[2], "no-update")]), "bad-round-result"),
    (lambda p: replace(make_result([p[0], p[1]], [(p[2], "no-update")]), head_digest=b"\x09" * 32), "bad-signature"),
    (lambda p: make_result([p[0], p[1]], [(p[2], "no-update")], signer=make_member("outsider")), "unknown-member"),
])
def test_invalid_results_are_refused_with_a_reason(build, code) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as raised:
        validate_round_result(build(PARTICIPANTS), PARTICIPANTS, MEMBERS)
    assert raised.value.code == code


def test_an_unknown_exclusion_reason_does_not_decode() -> None:
    fields = make_result(PARTICIPANTS[:2], [(PARTICIPANTS[2], "no-update")]).to_fields()
    fields[4][0][1] = "because"
    with pytest.raises(ValidationError) as raised:
        RoundResult.from_fields(fields)
    assert raised.value.code == "bad-encoding"


def test_the_integer_rule_agrees_with_the_float_rule_of_the_simulation() -> None:
    """The node decides with consensus.compute_adoption, the simulation with diagnostics.decide_adoption."""
    values = (0, 500_000, 650_000, 669_999, 670_000, 680_000, 700_000, 1_000_000)
    for quorum, margin in ((1, 20_000), (2, 20_000), (2, 0), (3, 30_000)):
        for (a_now, a_new), (b_now, b_new) in itertools.product(itertools.product(values, repeat=2), repeat=2):
            reports = [(A.member_id, a_now, a_new), (B.member_id, b_now, b_new)]
            integer, _ = compute_adoption(quorum, margin, reports)
            sites = [SiteReport(member.hex(), now / 1e6, new / 1e6) for member, now, new in reports]
            floating = decide_adoption(sites, AdoptionRule(quorum, margin / 1e6)).adopted
            assert integer == floating, (quorum, margin, reports)
    assert compute_adoption(1, 0, [(A.member_id, -1, 700_000)])[1].startswith("bad-metrics")
    assert compute_adoption(2, 0, [(A.member_id, 1, 1), (A.member_id, 2, 2)])[1] == "no-quorum: 1 of 2 sites reported"
