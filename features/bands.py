"""Risk bands: the cut points a probability is read against, and the default rule that sets them.

The service shows each risk with its band; training measures how often the bootstrap models move a line across
these cut points (:mod:`training.instability`), so both use this one rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RiskBands:
    """Cut points: low < ``intermediate`` <= intermediate < ``high`` <= high."""

    intermediate: float
    high: float

    def band(self, probability: float) -> str:
        """The band of a probability."""
        return (
            "high"
            if probability >= self.high
            else "intermediate"
            if probability >= self.intermediate
            else "low"
        )


def default_bands(average: float) -> RiskBands:
    """Bands anchored on an average risk: intermediate from it rounded up to 5%, high from twice that."""
    intermediate = math.ceil(round(average * 20, 9)) / 20
    return RiskBands(intermediate, round(2 * intermediate, 9))
