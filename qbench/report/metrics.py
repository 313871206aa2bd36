"""Classification quality metrics (scikit-learn)."""

from __future__ import annotations

import numpy as np


def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    """Accuracy, macro precision/recall(sensitivity)/F1, G-mean and the confusion matrix.

    G-mean is the geometric mean of the per-class recalls: it drops to 0 as
    soon as one class is never recognised, which plain accuracy hides.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    labels = np.arange(num_classes)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    present = support > 0
    recalls = recall[present]
    g_mean = float(np.exp(np.mean(np.log(recalls)))) if recalls.size and np.all(recalls > 0) else 0.0
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(np.mean(precision[present])) if present.any() else 0.0,
        "recall": float(np.mean(recalls)) if recalls.size else 0.0,
        "f1": float(np.mean(f1[present])) if present.any() else 0.0,
        "g_mean": g_mean,
        "samples": int(len(y_true)),
        "confusion_matrix": cm.tolist(),
    }
