"""The generator's calendar: promotion windows and the daily session intensity."""

from __future__ import annotations

from datetime import date, timedelta
from typing import NamedTuple

import numpy as np

from core.synthetic.model import (
    MONTH,
    PROMO_DAY_BOOST,
    TREND_PER_YEAR,
    WEEKDAY,
    GeneratorConfig,
)


def promotion_windows(start: date, end: date) -> list[tuple[str, date, date]]:
    """Fixed promotion periods `(name, first day, last day)` (inclusive) that touch
    [start, end]: January sale, spring sale, summer sale and Black Friday week
    (Monday before Thanksgiving to Cyber Monday), every year."""
    windows = []
    for year in range(start.year, end.year + 1):
        nov1 = date(year, 11, 1)
        thanksgiving = nov1 + timedelta(days=(3 - nov1.weekday()) % 7 + 21)
        for name, first, last in (
            ("January sale", date(year, 1, 2), date(year, 1, 15)),
            ("Spring sale", date(year, 4, 10), date(year, 4, 16)),
            ("Summer sale", date(year, 7, 10), date(year, 7, 23)),
            ("Black Friday week", thanksgiving - timedelta(days=3),
             thanksgiving + timedelta(days=4)),
        ):
            if last >= start and first <= end:
                windows.append((name, first, last))
    return windows


def promotion_flags(days: np.ndarray, windows: list[tuple[str, date, date]]) -> np.ndarray:
    """1 where a `datetime64` value falls on a day inside one of `windows`, else 0."""
    days = np.asarray(days).astype("datetime64[D]")
    flags = np.zeros(days.shape, dtype=np.int8)
    for _, first, last in windows:
        flags |= (days >= np.datetime64(first)) & (days <= np.datetime64(last))
    return flags


class Calendar(NamedTuple):
    """Every day of the configured range, day index 0 = `start`."""

    start_s: int  # first second of the range, seconds since the epoch
    end_s: int  # first second after the range
    days: int
    month: np.ndarray  # (days,) 0-11
    weekend: np.ndarray  # (days,) bool
    promo: np.ndarray  # (days,) int8
    cum_all: np.ndarray  # (days + 1,) cumulative daily session intensity
    cum_promo: np.ndarray  # (days + 1,) the same, promotion days only
    windows: list[tuple[str, date, date]]


def build_calendar(config: GeneratorConfig) -> Calendar:
    """The calendar of `config.start` .. `config.end` (inclusive)."""
    first = np.datetime64(config.start, "D")
    days = np.arange(first, np.datetime64(config.end, "D") + 1)  # (D,)
    n_days = len(days)
    day_num = days.astype(np.int64)
    weekday = (day_num + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    month = (days.astype("datetime64[M]").astype(np.int64) % 12).astype(np.int64)
    windows = promotion_windows(config.start, config.end)
    promo = promotion_flags(days, windows)
    years = np.arange(n_days) / 365.25
    intensity = (WEEKDAY[weekday] * MONTH[month] * (1 + TREND_PER_YEAR * years)
                 * np.where(promo == 1, PROMO_DAY_BOOST, 1.0))
    cum_all = np.concatenate([[0.0], np.cumsum(intensity)])
    cum_promo = np.concatenate([[0.0], np.cumsum(intensity * promo)])
    start_s = int(first.astype("datetime64[s]").astype(np.int64))
    return Calendar(start_s=start_s, end_s=start_s + n_days * 86400, days=n_days,
                    month=month, weekend=weekday >= 5, promo=promo, cum_all=cum_all,
                    cum_promo=cum_promo, windows=windows)
