"""The loyalty points ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from hita.domain.timefmt import iso_utc
from hita.domain.typedefs import JsonDict

MAX_POINTS_AMOUNT: Final = 1_000_000  # points in one add or redeem


@dataclass(frozen=True, slots=True)
class PointsEntry:
    """One ledger row: a positive amount is an add, a negative one a redeem."""

    id: int
    user_id: str
    amount: int
    reason: str
    balance_after: int
    created_at: datetime

    def to_json(self) -> JsonDict:
        return {
            "id": self.id,
            "type": "add" if self.amount > 0 else "redeem",
            "amount": abs(self.amount),
            "reason": self.reason,
            "balance_after": self.balance_after,
            "created_at": iso_utc(self.created_at),
        }
