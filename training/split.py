"""Grouped, stratified train/validation splitting (pure numpy, deterministic).

Images of one group (a patient, or a CT ``series_block``) always land on the
same side, so neighbouring slices of one patient cannot leak from training into
validation. Groups are shuffled with a fixed seed per class and assigned to the
held-out side until it holds about ``fraction`` of that class's images.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np


@dataclass(frozen=True)
class GroupSplit:
    """Group ids on each side of a split."""

    kept: tuple[str, ...]
    held_out: tuple[str, ...]


def get_group_labels(groups: Sequence[str], labels: Sequence[int] | np.ndarray) -> dict[str, int]:
    """Majority label of each group (ties go to the positive class)."""
    votes: dict[str, Counter[int]] = {}
    for group, label in zip(groups, labels, strict=True):
        votes.setdefault(group, Counter())[int(label)] += 1
    return {group: max(count, key=lambda label: (count[label], label)) for group, count in votes.items()}


def split_groups(groups: Sequence[str], labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> GroupSplit:
    """Hold out about ``fraction`` of each class's images, whole groups at a time."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if len(groups) != len(labels):
        raise ValueError("groups and labels must have the same length")
    sizes = Counter(groups)
    group_labels = get_group_labels(groups, labels)
    rng = np.random.default_rng(seed)
    held_out: list[str] = []
    for label in sorted(set(group_labels.values())):
        members = sorted(group for group, value in group_labels.items() if value == label)
        held_out.extend(_take_groups(members, sizes, fraction, rng))
    held = set(held_out)
    kept = sorted(group for group in sizes if group not in held)
    return GroupSplit(kept=tuple(kept), held_out=tuple(sorted(held)))


def _take_groups(members: list[str], sizes: Counter[str], fraction: float, rng: np.random.Generator) -> list[str]:
    """Shuffled groups of one class, taken while that brings the count closer to target."""
    order = [members[i] for i in rng.permutation(len(members))]
    target = fraction * sum(sizes[group] for group in members)
    taken: list[str] = []
    count = 0
    for group in order:
        if len(taken) == len(members) - 1:
            break  # always keep at least one group of every class for training
        if abs(count + sizes[group] - target) < abs(count - target) or not taken:
            taken.append(group)
            count += sizes[group]
    return taken


def get_indices(groups: Sequence[str], chosen: Sequence[str]) -> np.ndarray:
    """Indices of the items whose group is in ``chosen``."""
    wanted = set(chosen)
    return np.array([index for index, group in enumerate(groups) if group in wanted], dtype=np.int64)


def assign_folds(groups: Sequence[str], labels: Sequence[int] | np.ndarray, folds: int, seed: int) -> dict[str, int]:
    """Fold number of every group: per class, shuffled groups go to the fold with fewest images so far."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    sizes = Counter(groups)
    group_labels = get_group_labels(groups, labels)
    rng = np.random.default_rng(seed)
    assignment: dict[str, int] = {}
    for label in sorted(set(group_labels.values())):
        members = sorted(group for group, value in group_labels.items() if value == label)
        counts = [0] * folds
        for position in rng.permutation(len(members)):
            fold = min(range(folds), key=lambda index: (counts[index], index))
            assignment[members[position]] = fold
            counts[fold] += sizes[members[position]]
    return assignment
