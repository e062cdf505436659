"""What explanation columns a batch run writes; a module of its own so that ``lenrisk score --help`` needs no
scoring library."""

from __future__ import annotations

from enum import StrEnum


class Explain(StrEnum):
    """Explanation columns written per outcome."""

    NONE = "none"  # probabilities only (the fast path)
    TOP3 = "top3"  # the three fields with the largest |log-odds contribution|
    ALL = "all"  # every field's contribution and the base value
