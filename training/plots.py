"""PNG plots for a trained model: training curves, ROC curve, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from training.metrics import Confusion, compute_roc_curve

DPI = 90


def plot_history(history: dict[str, list[float]], stage1_epochs: int, path: Path) -> None:
    """Loss, accuracy and AUC per epoch for train and tuning sets; a line marks stage 2."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for axis, metric in zip(axes, ("loss", "accuracy", "auc"), strict=True):
        axis.plot(epochs, history.get(metric, []), label="train (augmented)")
        axis.plot(epochs, history.get(f"val_{metric}", []), label="tuning split")
        axis.axvline(stage1_epochs + 0.5, color="grey", linestyle="--", linewidth=1, label="fine-tuning starts")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path) -> None:
    """ROC curves; ``curves`` maps a legend name to (labels, scores, auc)."""
    figure, axis = plt.subplots(figsize=(4.8, 4.8))
    for name, (labels, scores, auc) in curves.items():
        fpr, tpr, _ = compute_roc_curve(labels, scores)
        axis.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f}, n={len(labels)})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.set_title("ROC")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_confusion(confusion: Confusion, threshold: float, title: str, path: Path) -> None:
    """2x2 confusion matrix (rows: truth, columns: prediction)."""
    matrix = np.array(
        [[confusion.true_negative, confusion.false_positive], [confusion.false_negative, confusion.true_positive]]
    )
    figure, axis = plt.subplots(figsize=(4.2, 3.8))
    axis.imshow(matrix, cmap="Blues")
    for row in range(2):
        for column in range(2):
            colour = "white" if matrix[row, column] > matrix.max() / 2 else "black"
            axis.text(column, row, str(matrix[row, column]), ha="center", va="center", color=colour, fontsize=14)
    axis.set_xticks([0, 1], ["normal", "cancer"])
    axis.set_yticks([0, 1], ["normal", "cancer"])
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{title}\nthreshold {threshold:.3f}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
