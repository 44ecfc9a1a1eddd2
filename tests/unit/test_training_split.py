"""Grouped splitting: a group never lands on both sides."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data import LoadedData, default_data_dir, list_records
from training.split import get_group_labels, get_indices, split_groups
from training.train import TrainConfig, make_splits

group_lists = st.lists(
    st.tuples(st.sampled_from([f"g{i}" for i in range(25)]), st.integers(0, 1)), min_size=2, max_size=120
)


@settings(max_examples=200, deadline=None)
@given(items=group_lists, fraction=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_no_group_on_both_sides(items: list[tuple[str, int]], fraction: float, seed: int) -> None:
    groups = [group for group, _ in items]
    labels = [label for _, label in items]
    split = split_groups(groups, labels, fraction, seed)
    assert not set(split.kept) & set(split.held_out)
    assert set(split.kept) | set(split.held_out) == set(groups)
    kept, held = get_indices(groups, split.kept), get_indices(groups, split.held_out)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(len(groups)))
    group_labels = get_group_labels(groups, labels)
    for label in set(group_labels.values()):
        # a class with one group or more always keeps one for training
        assert any(group_labels[group] == label for group in split.kept)


@settings(max_examples=50, deadline=None)
@given(items=group_lists, seed=st.integers(0, 2**31))
def test_split_is_deterministic(items: list[tuple[str, int]], seed: int) -> None:
    groups = [group for group, _ in items]
    labels = [label for _, label in items]
    assert split_groups(groups, labels, 0.2, seed) == split_groups(groups, labels, 0.2, seed)


def test_real_ct_three_way_split_is_grouped_and_near_fractions() -> None:
    records = list_records(default_data_dir("ct"))
    labels = np.array([record.label for record in records], dtype=np.int32)
    data = LoadedData(tuple(records), np.zeros((len(records), 1, 1, 3), np.float32), labels, "digest")
    config = TrainConfig(modality="ct", data_dir="", out_dir="", weights_path="")
    splits = make_splits(data, config)
    sides = {name: {r.group for r in getattr(splits, name).records} for name in ("train", "tuning", "validation")}
    assert not sides["train"] & sides["tuning"]
    assert not sides["train"] & sides["validation"]
    assert not sides["tuning"] & sides["validation"]
    assert sum(len(getattr(splits, name).labels) for name in sides) == len(records)
    assert 0.15 < len(splits.validation.labels) / len(records) < 0.25
    for name in sides:  # both classes on every side
        assert set(Counter(getattr(splits, name).labels.tolist())) == {0, 1}
    assert all(group.startswith(("malignant_b", "normal_b")) for group in sides["train"])


@settings(max_examples=100, deadline=None)
@given(items=group_lists, folds=st.integers(2, 6), seed=st.integers(0, 2**31))
def test_every_group_is_in_exactly_one_fold(items: list[tuple[str, int]], folds: int, seed: int) -> None:
    from training.split import assign_folds

    groups = [group for group, _ in items]
    labels = [label for _, label in items]
    assignment = assign_folds(groups, labels, folds, seed)
    assert set(assignment) == set(groups)
    assert all(0 <= fold < folds for fold in assignment.values())
    group_labels = get_group_labels(groups, labels)
    sizes = Counter(groups)
    for label in set(group_labels.values()):
        # greedy least-loaded assignment: fold sizes of a class differ by at most its largest group
        per_fold = [sum(sizes[g] for g in sizes if group_labels[g] == label and assignment[g] == fold)
                    for fold in range(folds)]
        largest = max(sizes[g] for g in sizes if group_labels[g] == label)
        assert max(per_fold) - min(per_fold) <= largest
