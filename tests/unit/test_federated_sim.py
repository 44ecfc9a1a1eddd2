"""training.federated_sim on two synthetic sites whose signal lives in different features."""

from __future__ import annotations

import numpy as np

from diagnostics.federated import Head, LocalConfig, Preconditioner
from training.federated_sim import SITES, Federation, Privacy, check_claims, simulate

FEATURES = 12


def make_split(seed: int, signal_column: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    parts = {}
    for part, count in (("train", 200), ("tuning", 60), ("validation", 80)):
        labels = rng.integers(0, 2, count)
        features = np.abs(rng.normal(1.0, 0.4, (count, FEATURES)))
        features[:, signal_column] += 0.5 * labels
        features[:, 5] += 0.5 * labels  # a weaker signal both sites share
        parts[part] = (features, labels)
    return parts


def test_federated_head_transfers_where_local_heads_do_not_and_tracks_pooled() -> None:
    sites = {SITES[0][0]: make_split(1, 0), SITES[1][0]: make_split(2, 1)}
    everything = np.concatenate([split["train"][0] for split in sites.values()])
    federation = Federation(sites, Preconditioner.from_features(everything), Head.create(np.zeros(FEATURES), 0.0))
    rows = simulate(federation, rounds=5, config=LocalConfig(epochs=10), privacy=Privacy())
    checks = check_claims(rows[-1])
    assert all(checks.values()), (checks, rows[-1])
    assert len({row["federated_digest"] for row in rows}) == 5  # every round moved the head
