"""The linear probe: L2-regularised logistic regression on frozen features (scikit-learn), and the accuracy interval.

Protocol: standardise with the training split's statistics; fit on train for each L2 strength of `C_GRID`; keep the one
with the best validation accuracy (ties: the stronger regularisation); refit on train + val with it; score the test split
once. The test split takes no part in any choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

C_GRID: Final = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # inverse L2 strength; larger C overfits thousands of features
MAX_ITER: Final = 5000
LEVEL: Final = 0.95


@dataclass(frozen=True)
class ProbeScore:
    accuracy: float
    ci_lo: float
    ci_hi: float
    n_test: int
    chance: float  # the test accuracy of always answering the training split's most frequent class
    predictions: np.ndarray  # (n_test,) predicted class per test image
    val_accuracy: float = float("nan")
    c: float = float("nan")  # the chosen inverse L2 strength (linear probe only)


def wilson_interval(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (scipy's `binomtest(...).proportion_ci(method="wilson")`)."""
    ci = binomtest(correct, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def score(predictions: np.ndarray, y_test: np.ndarray, y_train: np.ndarray, **extra: float) -> ProbeScore:
    correct = int((predictions == y_test).sum())
    lo, hi = wilson_interval(correct, len(y_test))
    majority = np.bincount(y_train).argmax()
    return ProbeScore(correct / len(y_test), lo, hi, len(y_test), float((y_test == majority).mean()), predictions,
                      **extra)


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> Pipeline:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=MAX_ITER))
    # One BLAS thread: these problems are small, and with torch's threads and a second BLAS in the process, more
    # threads oversubscribe the cores (8x slower on a busy 2-core machine, measured).
    with threadpool_limits(limits=1, user_api="blas"):
        return model.fit(x, y)


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray) -> ProbeScore:
    """Accuracy on the test split of the logistic regression chosen on the validation split (see the module doc)."""
    best_c, best_val = C_GRID[0], -1.0
    for c in C_GRID:
        val = float((_fit(x_train, y_train, c).predict(x_val) == y_val).mean())
        if val > best_val:
            best_c, best_val = c, val
    model = _fit(np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]), best_c)
    with threadpool_limits(limits=1, user_api="blas"):
        predictions = model.predict(x_test)
    return score(predictions, y_test, y_train, val_accuracy=best_val, c=best_c)
