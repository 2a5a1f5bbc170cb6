"""Classification quality of scores against true labels."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

METRICS = ("roc_auc", "f1", "precision", "recall", "balanced_accuracy")


def classification_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC, F1, precision, recall and balanced accuracy; `y_true` is 1 for the positive class.

    ROC AUC is NaN when only one class is present: it is undefined there, not zero.
    """
    y_true = np.asarray(y_true).astype(int)
    predicted = (np.asarray(scores) >= threshold).astype(int)
    both_classes = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, scores)) if both_classes else float("nan"),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted)) if both_classes else float("nan"),
        "rows": float(len(y_true)),
        "positives": float(y_true.sum()),
    }
