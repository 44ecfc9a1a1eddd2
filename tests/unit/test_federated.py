"""The federated core (diagnostics.federated): local training, screening, FedAvg, privacy, adoption."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diagnostics.auc import compute_auc
from diagnostics.federated import (AdoptionRule, FederatedError, Head, LocalConfig, Preconditioner, SiteReport,
                                   Update, aggregate, compute_epsilon, compute_loss, decide_adoption, privatise,
                                   screen_updates, train_local)
from training.heads import fit_logistic

FEATURES = 16


def make_site(seed: int, count: int = 120, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Raw-scale features (like pooled ReLU6 activations) whose column 2 carries the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    features = np.abs(rng.normal(1.0 + shift, 0.5, (count, FEATURES)))
    features[:, 2] += 0.8 * labels
    return features, labels


def make_updates(base: Head, count: int = 3) -> list[Update]:
    updates = []
    for index in range(count):
        x, y = make_site(index)
        updates.append(Update(f"member-{index}", train_local(base, x, y, LocalConfig(epochs=10),
                                                             Preconditioner.from_features(x)), len(y)))
    return updates


ZERO = Head.create(np.zeros(FEATURES), 0.0)


def test_local_training_minimises_the_training_loss_of_fit_logistic() -> None:
    x, y = make_site(0, 300)
    preconditioner = Preconditioner.from_features(x)
    l2 = 1e-2
    config = LocalConfig(epochs=3000, l2=l2)
    head = train_local(ZERO, x, y, config, preconditioner)
    reference = fit_logistic(x, y, l2)  # Newton on the same loss, standardised by the same statistics
    assert compute_loss(head, x, y, l2, preconditioner.scale) < compute_loss(ZERO, x, y, l2, preconditioner.scale)
    assert np.corrcoef(head.logits(x), reference.logits(x))[0, 1] > 0.999
    assert np.allclose(head.weights, reference.weights, rtol=0.05, atol=0.02)


def test_a_few_epochs_improve_the_auc_from_zero_and_are_deterministic() -> None:
    x, y = make_site(1)
    preconditioner = Preconditioner.from_features(x)
    first = train_local(ZERO, x, y, LocalConfig(epochs=5), preconditioner)
    second = train_local(ZERO, x, y, LocalConfig(epochs=5), preconditioner)
    assert first.digest() == second.digest()
    assert compute_auc(y, first.logits(x)) > 0.8


def test_local_training_refuses_one_class() -> None:
    x, _ = make_site(2)
    with pytest.raises(FederatedError) as raised:
        train_local(ZERO, x, np.zeros(len(x), dtype=int), LocalConfig(), Preconditioner.identity(FEATURES))
    assert raised.value.code == "bad-site-data"


def test_fedavg_is_weighted_by_sample_count() -> None:
    one = Update("b", Head.create(np.full(FEATURES, 1.0), 1.0), 1)
    three = Update("a", Head.create(np.full(FEATURES, 5.0), -3.0), 3)
    result = aggregate([one, three])
    assert np.allclose(result.weights, 4.0) and result.bias == pytest.approx(-2.0)


def test_aggregate_and_screening_do_not_depend_on_input_order() -> None:
    updates = make_updates(ZERO, 4)
    digests = set()
    for seed in range(6):
        order = [updates[i] for i in np.random.default_rng(seed).permutation(len(updates))]
        digests.add(aggregate(screen_updates(order, ZERO).accepted).digest())
    assert len(digests) == 1


def test_a_poisoned_update_scaled_by_100_is_excluded_as_a_norm_outlier() -> None:
    updates = make_updates(ZERO, 3)
    poisoned = Update("member-1", Head.create(updates[1].head.weights * 100, updates[1].head.bias * 100),
                      updates[1].sample_count)
    screening = screen_updates([updates[0], poisoned, updates[2]], ZERO)
    assert dict(screening.excluded) == {"member-1": "norm-outlier"}
    assert [update.member_id for update in screening.accepted] == ["member-0", "member-2"]
    honest = aggregate(screen_updates([updates[0], updates[2]], ZERO).accepted)
    assert aggregate(screening.accepted).digest() == honest.digest()


def test_honest_updates_are_all_kept() -> None:
    screening = screen_updates(make_updates(ZERO, 3), ZERO)
    assert not screening.excluded and len(screening.accepted) == 3


@pytest.mark.parametrize(("make_bad", "code"), [
    (lambda u: Update(u.member_id, Head.create(np.append(u.head.weights[:-1], np.nan), u.head.bias), 5), "non-finite"),
    (lambda u: Update(u.member_id, Head.create(u.head.weights, math.inf), 5), "non-finite"),
    (lambda u: Update(u.member_id, Head.create(u.head.weights[:-1], u.head.bias), 5), "bad-shape"),
    (lambda u: Update(u.member_id, u.head, 0), "bad-sample-count"),
    (lambda u: Update(u.member_id, u.head, 5, {"auc": math.nan}), "non-finite"),
])
def test_malformed_updates_are_excluded_with_a_reason(make_bad, code) -> None:  # type: ignore[no-untyped-def]
    updates = make_updates(ZERO, 3)
    screening = screen_updates([updates[0], make_bad(updates[1]), updates[2]], ZERO)
    assert dict(screening.excluded) == {"member-1": code}
    assert len(screening.accepted) == 2


def test_two_different_updates_from_one_member_are_excluded_as_equivocation() -> None:
    updates = make_updates(ZERO, 3)
    twin = Update("member-0", updates[1].head, updates[0].sample_count)
    screening = screen_updates([updates[0], twin, updates[1], updates[2]], ZERO)
    assert dict(screening.excluded) == {"member-0": "equivocation"}
    # the same update received twice is not equivocation
    assert not screen_updates([updates[0], updates[0], updates[1]], ZERO).excluded


def test_head_bytes_round_trip_and_digest_names_the_content() -> None:
    head = make_updates(ZERO, 1)[0].head
    again = Head.from_bytes(head.to_bytes(), FEATURES)
    assert again.digest() == head.digest() and np.array_equal(again.weights, head.weights)
    assert Head.create(head.weights, head.bias + 1e-12).digest() != head.digest()
    with pytest.raises(FederatedError) as raised:
        Head.from_bytes(head.to_bytes()[:-8], FEATURES)
    assert raised.value.code == "bad-shape"


def test_privatise_clips_the_change_and_adds_noise_of_the_stated_scale() -> None:
    big = Head.create(np.full(FEATURES, 10.0), 10.0)
    clipped = privatise(big, ZERO, clip_norm=1.0, noise_multiplier=0.0, rng=np.random.default_rng(0))
    assert np.linalg.norm(np.append(clipped.weights, clipped.bias)) == pytest.approx(1.0)
    noisy = [privatise(ZERO, ZERO, 1.0, 2.0, np.random.default_rng(seed)).weights for seed in range(200)]
    assert np.std(np.concatenate(noisy)) == pytest.approx(2.0, rel=0.05)


def test_epsilon_follows_the_zcdp_accountant() -> None:
    rho = 10 * 2.0 / 4.0 ** 2
    assert compute_epsilon(4.0, 10, 1e-5) == pytest.approx(rho + 2 * math.sqrt(rho * math.log(1e5)))
    assert compute_epsilon(8.0, 10) < compute_epsilon(4.0, 10) < compute_epsilon(4.0, 20)
    assert compute_epsilon(0.0, 1) == math.inf


def test_adoption_needs_a_quorum_and_no_site_losing_more_than_the_margin() -> None:
    rule = AdoptionRule(quorum=2, max_auc_drop=0.02)
    good = [SiteReport("a", 0.70, 0.74), SiteReport("b", 0.65, 0.64)]
    assert decide_adoption(good, rule).adopted
    assert decide_adoption(good[:1], rule).reason.startswith("no-quorum")
    assert decide_adoption([good[0], good[0]], rule).reason.startswith("no-quorum")  # one site counted once
    dropped = decide_adoption([good[0], SiteReport("b", 0.65, 0.60)], rule)
    assert not dropped.adopted and dropped.reason.startswith("auc-drop: b")
    assert not decide_adoption([good[0], SiteReport("b", math.nan, 0.7)], rule).adopted
