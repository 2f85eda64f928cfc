"""The pCTR metrics that training jobs and ``evaluate ads`` report."""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import log_loss, roc_auc_score


def ctr_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """AUC, log loss and calibration ratio (mean predicted CTR / observed CTR)."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1 - 1e-7)
    both = 0 < labels.sum() < len(labels)
    return {
        "auc": round(float(roc_auc_score(labels, probs)), 4) if both else float("nan"),
        "log_loss": round(float(log_loss(labels, probs, labels=[0, 1])), 4),
        "calibration_ratio": round(float(probs.mean() / max(labels.mean(), 1e-12)), 4),
        "mean_pctr": round(float(probs.mean()), 5),
        "observed_ctr": round(float(labels.mean()), 5),
    }


def bootstrap_auc(labels: np.ndarray, probs: np.ndarray, *, rounds: int = 1000, seed: int = 7) -> dict[str, float]:
    """Percentile bootstrap 95% interval of the AUC (``scipy.stats.bootstrap``, resampling rows in pairs)."""

    def auc(y: np.ndarray, p: np.ndarray) -> float:
        return roc_auc_score(y, p) if 0 < y.sum() < len(y) else np.nan  # a resample with one class has no AUC

    result = stats.bootstrap(
        (np.asarray(labels), np.asarray(probs)),
        auc,
        paired=True,
        vectorized=False,
        n_resamples=rounds,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return {
        "auc_ci95_low": round(float(result.confidence_interval.low), 4),
        "auc_ci95_high": round(float(result.confidence_interval.high), 4),
        "bootstrap_rounds": int(np.isfinite(result.bootstrap_distribution).sum()),
    }
