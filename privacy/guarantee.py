"""What makes a run differentially private: the one definition every layer asks.

A run is private when it claims a finite epsilon (a number >= 0) for a privacy unit
(customer, reviewer, example). A run with an infinite, missing or unreadable epsilon,
or with privacy unit "none" or none at all, carries no guarantee. The ledger, the
budget, the audit, the model registry and the pages call `is_private` (or
`record_is_private` on a model's privacy record) rather than testing epsilon or the
unit themselves.

Imports nothing from the rest of the project.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

NO_UNIT = "none"  # the privacy unit of a run that is not private


def is_private(epsilon: object, privacy_unit: object) -> bool:
    """Whether a run with this claimed `epsilon` (a number, or "inf" as JSON writes it)
    and `privacy_unit` carries a differential-privacy guarantee."""
    if not isinstance(privacy_unit, str) or privacy_unit in ("", NO_UNIT):
        return False
    if epsilon is None or isinstance(epsilon, bool):
        return False
    try:
        value = float(epsilon)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value >= 0


def record_is_private(record: Mapping[str, object]) -> bool:
    """`is_private` of a run's privacy record (a model's privacy.json): its "epsilon"
    and "privacy_unit"; a record that says "private": false is not private whatever
    else it says."""
    if record.get("private") is False:
        return False
    return is_private(record.get("epsilon"), record.get("privacy_unit"))
