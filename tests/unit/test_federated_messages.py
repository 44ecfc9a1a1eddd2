"""model_round / model_update wire messages: strict schema, limits, signatures over the fields."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from consensus.crypto import is_signature_valid, sign
from network.codec import decode_message, encode_message
from network.constants import MAX_HEAD_BYTES, MAX_ROUND_PARTICIPANTS
from network.errors import MalformedFrame
from diagnostics.federated import Head
from network.model_messages import ROUND_DOMAIN, UPDATE_DOMAIN, ModelRound, ModelUpdate
from node.federated_round import RoundState, decode_update, finalise_round
from tests.support.builders import make_member

MEMBER = make_member("Hospital A")


def make_round(**changes: object) -> ModelRound:
    unsigned = ModelRound(MEMBER.member_id, 1, "xray", b"\x01" * 32, b"\x02" * 32, 20, 1_000_000, 30_000,
                          1_800_000_000_000, (MEMBER.member_id,), 1, 20_000)
    unsigned = replace(unsigned, **changes)  # type: ignore[arg-type]
    return replace(unsigned, signature=sign(MEMBER.key, ROUND_DOMAIN, unsigned.signed_bytes()))


def make_update(proposal: ModelRound, head: Head, sample_count: int = 10) -> ModelUpdate:
    unsigned = ModelUpdate(proposal.round_id, MEMBER.member_id, head.to_bytes(), sample_count,
                           (("heldout_auc_current", 650_000),))
    return replace(unsigned, signature=sign(MEMBER.key, UPDATE_DOMAIN, unsigned.signed_bytes()))


def test_messages_round_trip_and_signatures_cover_every_field() -> None:
    proposal = make_round()
    assert decode_message(encode_message(proposal)) == proposal
    assert is_signature_valid(MEMBER.member.public_key, proposal.signature, ROUND_DOMAIN, proposal.signed_bytes())
    changed = replace(proposal, epochs=21)
    assert changed.round_id != proposal.round_id
    assert not is_signature_valid(MEMBER.member.public_key, changed.signature, ROUND_DOMAIN, changed.signed_bytes())
    update = make_update(proposal, Head.create(np.arange(4.0), 0.5))
    assert decode_message(encode_message(update)) == update
    # a round signature is never valid as an update signature (domain separation)
    assert not is_signature_valid(MEMBER.member.public_key, proposal.signature, UPDATE_DOMAIN, proposal.signed_bytes())


@pytest.mark.parametrize("frame_fields", [
    lambda p: [*p.to_fields()[:2], "mri", *p.to_fields()[3:]],  # unknown modality
    lambda p: [*p.to_fields()[:9], [p.proposer] * (MAX_ROUND_PARTICIPANTS + 1), *p.to_fields()[10:]],
    lambda p: [*p.to_fields()[:5], 0, *p.to_fields()[6:]],  # zero epochs
    lambda p: p.to_fields()[:-1],  # no signature
])
def test_malformed_rounds_are_refused(frame_fields) -> None:  # type: ignore[no-untyped-def]
    from consensus.encoding import pack
    with pytest.raises(MalformedFrame):
        decode_message(pack(["model_round", frame_fields(make_round())]))


def test_an_oversized_head_is_refused_at_decoding() -> None:
    from consensus.encoding import pack
    update = make_update(make_round(), Head.create(np.zeros(4), 0.0))
    fields = update.to_fields()
    fields[2] = b"\x00" * (MAX_HEAD_BYTES + 8)
    with pytest.raises(MalformedFrame):
        decode_message(pack(["model_update", fields]))


def test_a_round_outcome_depends_only_on_the_updates_received() -> None:
    proposal = make_round()
    base = Head.create(np.zeros(4), 0.0)
    update = make_update(proposal, Head.create([0.1, 0.2, 0.3, 0.4], 0.1))
    garbage = replace(update, head=b"\x00" * 13)  # not float64 values: a bad-shape update, not a crash
    assert decode_update(garbage).head.weights.size == 0
    digests = set()
    for _ in range(2):
        state = RoundState(proposal, base)
        state.updates[update.digest] = update
        finalise_round(state)
        assert state.status == "aggregated" and state.excluded == {}
        assert state.head is not None
        digests.add(state.head.digest())
    assert digests == {Head.create([0.1, 0.2, 0.3, 0.4], 0.1).digest()}
    empty = RoundState(proposal, base)
    finalise_round(empty)
    assert empty.status == "failed: no-updates" and empty.excluded == {MEMBER.member_id.hex(): "no-update"}


def test_federated_settings_refuse_unknown_keys_and_default_the_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from node.federated_round import FederatedSettings

    settings = FederatedSettings.from_section({"data_dir": "/data/xray", "source": "JSRT"}, tmp_path)
    assert settings.data_dir == Path("/data/xray") and settings.source == "JSRT"
    assert settings.cache_dir == tmp_path / "federated-cache"
    with pytest.raises(ValueError, match="unknown keys"):
        FederatedSettings.from_section({"data-dir": "/x"}, tmp_path)
    with pytest.raises(ValueError, match="modality"):
        FederatedSettings.from_section({"modality": "mri"}, tmp_path)


def test_node_privacy_clips_adds_noise_and_reports_epsilon(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import math

    from node.federated_round import FederatedSettings, apply_privacy, describe_privacy

    base = Head.create(np.zeros(4), 0.0)
    trained = Head.create(np.full(4, 3.0), 4.0)  # change of norm 7
    off = FederatedSettings.from_section({}, tmp_path)
    assert apply_privacy(trained, base, off, np.random.default_rng(0)) is trained
    assert describe_privacy(off, 3)["epsilon"] is None
    clip = FederatedSettings.from_section({"clip_norm": 1.0}, tmp_path)
    clipped = apply_privacy(trained, base, clip, np.random.default_rng(0))
    assert math.isclose(float(np.linalg.norm(np.append(clipped.weights, clipped.bias))), 1.0)
    noisy = FederatedSettings.from_section({"clip_norm": 1.0, "noise_multiplier": 4.0}, tmp_path)
    assert apply_privacy(trained, base, noisy, np.random.default_rng(0)).digest() != clipped.digest()
    assert describe_privacy(noisy, 10)["epsilon"] == pytest.approx(8.837, abs=0.01)
    with pytest.raises(ValueError, match="clip_norm"):
        FederatedSettings.from_section({"noise_multiplier": 1.0}, tmp_path)
