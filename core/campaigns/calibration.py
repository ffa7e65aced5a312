"""Scores -> probabilities: smoothed isotonic regression or Platt scaling, cross-fitted.

`Calibrator("auto")` fits both with K-fold cross-fitting and keeps the one with the
lower out-of-fold expected calibration error (equal-width bins); the chosen method is
then refitted on all its data. Its out-of-fold probabilities (`oof_`) are what honest
"after calibration" metrics are computed on, never in-sample predictions.
"""

from __future__ import annotations

import numpy as np

from core.campaigns.metrics import ECE_BINS, expected_calibration_error

CALIBRATIONS = ("auto", "isotonic", "platt")
MIN_TIER_POSITIVES = 10  # below: the tier is calibrated by Platt scaling only


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


class SmoothedIsotonic:
    """Isotonic regression whose step values are shrunk toward the overall rate by
    `prior` pseudo-customers: (positives + prior * rate) / (customers + prior) per step,
    kept non-decreasing. A step of 8 customers who all bought reads 0.9, not a certain
    1.0 (plain isotonic regression claims certainty from a handful of cases)."""

    def __init__(self, prior: float = 1.0):
        self.prior = prior

    def fit(self, x: np.ndarray, y: np.ndarray) -> SmoothedIsotonic:
        from sklearn.isotonic import IsotonicRegression

        self.iso_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        rate = float(np.mean(y))
        steps = self.iso_.predict(x)
        values = np.unique(steps)  # ascending
        step = np.searchsorted(values, steps)
        n = np.bincount(step, minlength=len(values))
        pos = np.bincount(step, weights=y, minlength=len(values))
        self.values_ = values
        self.smoothed_ = np.maximum.accumulate((pos + self.prior * rate) / (n + self.prior))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        steps = self.iso_.predict(x)
        # Between steps (interpolated values) read the smoothed value of the lower step.
        index = np.clip(np.searchsorted(self.values_, steps, side="right") - 1, 0,
                        len(self.values_) - 1)
        return self.smoothed_[index]


class Calibrator:
    """Scores -> probabilities, by (smoothed) isotonic regression or Platt scaling (sklearn
    style: `__init__` stores parameters, `fit` returns self, learned attributes end in _).

    method "auto" fits both with `folds`-fold cross-fitting and keeps the one with the
    lower out-of-fold ECE (ties: Platt, the simpler); with fewer than
    `MIN_TIER_POSITIVES` positives only Platt is tried. Without two classes the
    calibrator is the constant observed rate. `oof_` holds the out-of-fold probabilities
    of the chosen method (what honest metrics are computed on); `ece_` the out-of-fold
    ECE of each method tried; `cross_fitted_` is False when a class was too small to
    hold any of it out (then `oof_` is in-sample)."""

    def __init__(self, method: str = "auto", *, folds: int = 5, bins: int = ECE_BINS,
                 seed: int = 0):
        self.method = method
        self.folds = folds
        self.bins = bins
        self.seed = seed

    @staticmethod
    def _make(method: str):
        if method == "isotonic":
            return SmoothedIsotonic()
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1e4, max_iter=1000)

    @staticmethod
    def _fit_one(method: str, x: np.ndarray, y: np.ndarray):
        model = Calibrator._make(method)
        return model.fit(x if method == "isotonic" else x.reshape(-1, 1), y)

    @staticmethod
    def _predict_one(method: str, model, x: np.ndarray) -> np.ndarray:
        if method == "isotonic":
            return np.asarray(model.predict(x), dtype=np.float64)
        return model.predict_proba(x.reshape(-1, 1))[:, 1]

    def _methods(self, positives: int) -> list[str]:
        if self.method != "auto":
            return [self.method]
        if positives < MIN_TIER_POSITIVES:
            return ["platt"]
        return ["platt", "isotonic"]

    def _out_of_fold(self, methods: list[str], x: np.ndarray, y: np.ndarray, k: int
                     ) -> dict[str, np.ndarray]:
        """Per method, the probability of each row from a model fitted without its fold
        (k >= 2), else in-sample."""
        from sklearn.model_selection import StratifiedKFold

        oof: dict[str, np.ndarray] = {}
        if k < 2:  # too few of one class to hold any out: in-sample (`cross_fitted_`)
            for method in methods:
                oof[method] = self._predict_one(method, self._fit_one(method, x, y), x)
            return oof
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=self.seed)
        for method in methods:
            out = np.empty(len(y))
            for fit_rows, held in splitter.split(x.reshape(-1, 1), y):
                if len(np.unique(y[fit_rows])) < 2:
                    out[held] = y[fit_rows].mean()
                    continue
                model = self._fit_one(method, x[fit_rows], y[fit_rows])
                out[held] = self._predict_one(method, model, x[held])
            oof[method] = out
        return oof

    def fit(self, scores, labels) -> Calibrator:
        if self.method not in CALIBRATIONS:
            raise ValueError(f"method={self.method!r}: choose one of {CALIBRATIONS}.")
        x = np.asarray(scores, dtype=np.float64).reshape(-1)
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
        if x.shape != y.shape or not len(x):
            raise ValueError(f"{x.shape[0]} scores and {y.shape[0]} labels: give one label "
                             "per score, at least one.")
        if not np.isfinite(x).all():
            raise ValueError("scores hold NaN or inf: calibrate finite scores only.")
        positives = int(y.sum())
        negatives = len(y) - positives
        self.n_, self.positives_ = len(y), positives
        self.rate_ = positives / len(y)
        if positives == 0 or negatives == 0:
            self.method_ = "constant"
            self.oof_ = np.full(len(y), self.rate_)
            self.ece_ = {"constant": expected_calibration_error(self.oof_, y, bins=self.bins)}
            return self
        methods = self._methods(positives)
        k = min(self.folds, positives, negatives)
        oof = self._out_of_fold(methods, x, y, k)
        self.cross_fitted_ = k >= 2
        self.ece_ = {m: expected_calibration_error(v, y, bins=self.bins)
                     for m, v in oof.items()}
        self.method_ = min(methods, key=lambda m: (self.ece_[m], m != "platt"))
        self.oof_ = oof[self.method_]
        self.model_ = self._fit_one(self.method_, x, y)
        return self

    def predict(self, scores) -> np.ndarray:
        """Probabilities in [0, 1], one per score."""
        x = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.method_ == "constant":
            return np.full(len(x), self.rate_)
        return np.clip(self._predict_one(self.method_, self.model_, x), 0.0, 1.0)
