"""The grouped split now lives in :mod:`diagnostics.split` (the node's federated rounds use it too)."""

from diagnostics.split import GroupSplit, assign_folds, get_group_labels, get_indices, split_groups, split_three

__all__ = ["GroupSplit", "assign_folds", "get_group_labels", "get_indices", "split_groups", "split_three"]
