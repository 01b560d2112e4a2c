"""Serving side of ``direction_lightgbm``: the Platt calibration of the booster's raw P(up), and its card entry.

One implementation for training and serving: the trainer fits ``slope`` and ``intercept`` (a logistic regression
on the logit of the booster's raw P(up), on the most recent part of the training window), predicts its walk-forward
answers and writes the card with this module; the service's ``DirectionRunner`` reads the card and calibrates with
it. numpy only: the service imports it.

    calibrated P(up) = sigmoid(slope * logit(raw P(up)) + intercept),   raw P(up) clipped to [1e-6, 1 - 1e-6]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = "platt"
#: Raw probabilities are clipped this far from 0 and 1 before their logit is taken.
CLIP = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of ``p`` clipped to [CLIP, 1 - CLIP]."""
    p = np.clip(p, CLIP, 1 - CLIP)
    return np.asarray(np.log(p / (1 - p)))


def calibrate(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """The calibrated P(up) of each raw P(up)."""
    return np.asarray(1.0 / (1.0 + np.exp(-(slope * logit(raw) + intercept))))


@dataclass(frozen=True)
class PlattCalibration:
    """The two numbers of a Platt calibration, as the card records them."""

    slope: float
    intercept: float

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return calibrate(raw, self.slope, self.intercept)

    def card(self) -> dict[str, Any]:
        """The card's ``calibration`` entry."""
        return {"method": METHOD, "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_card(cls, calibration: Mapping[str, Any]) -> PlattCalibration:
        """From the card's ``calibration`` entry; ValueError when it is not a Platt calibration with finite numbers."""
        try:
            method, slope, intercept = calibration["method"], calibration["slope"], calibration["intercept"]
            values = float(slope), float(intercept)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"no usable Platt calibration ({type(error).__name__}: {error})") from error
        if method != METHOD or not np.isfinite(values).all():
            raise ValueError(f"no usable Platt calibration (method {method!r}, slope {slope}, intercept {intercept})")
        return cls(*values)
