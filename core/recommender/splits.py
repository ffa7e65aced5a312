"""Train / validation / test splits of interactions, and leak-free histories.

A split holds `train` (what a model may learn from) and one target row per user in
`valid` and in `test`. The history of a valid target is the user's train interactions
before it; the history of a test target is the user's train and valid interactions
before it (`Split.known_for`).

`histories` is strict (`ts < target ts`), which is what training examples need: Amazon
stamps reviews by the day, and an item reviewed the same day as the target is not known
to have come earlier. The evaluation harness can also use the in-sequence history
(`histories_frame(..., same_time=True)`, see core.recommender.evaluate).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from core.store.interactions import INTERACTION_COLUMNS, ITEM, TS, USER, as_interactions

TARGET_TS = "target_ts"


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame  # interactions a model may learn from
    valid: pd.DataFrame  # one target row per user (INTERACTION_COLUMNS), may be empty
    test: pd.DataFrame  # one target row per user (INTERACTION_COLUMNS)
    name: str

    def known_for(self, on: str) -> pd.DataFrame:
        """Interactions known when predicting the `on` ("valid" or "test") targets."""
        if on == "valid":
            return self.train
        if on == "test":
            return as_interactions(pd.concat([self.train, self.valid], ignore_index=True))
        raise ValueError(f"on={on!r}: choose 'valid' or 'test'.")

    def targets(self, on: str) -> pd.DataFrame:
        if on not in ("valid", "test"):
            raise ValueError(f"on={on!r}: choose 'valid' or 'test'.")
        return self.valid if on == "valid" else self.test


def _empty() -> pd.DataFrame:
    return as_interactions(pd.DataFrame(columns=list(INTERACTION_COLUMNS)))


def leave_last_out(interactions: pd.DataFrame, *, min_interactions: int = 3) -> Split:
    """Per user: the last interaction is the test target, the second-to-last the valid
    target, the rest is train. Users with fewer than `min_interactions` interactions
    stay entirely in train (they still teach popularity and co-occurrence)."""
    if min_interactions < 2:
        raise ValueError(f"min_interactions={min_interactions}: a user needs at least 2 "
                         "interactions to give a valid and a test target; use 3 or more "
                         "so that some history is left to learn from.")
    frame = as_interactions(interactions)
    by_user = frame.groupby(USER, sort=False)
    count = by_user[ITEM].transform("size")
    from_end = by_user.cumcount(ascending=False)
    held = count >= min_interactions
    test = frame[held & (from_end == 0)].reset_index(drop=True)
    valid = frame[held & (from_end == 1)].reset_index(drop=True)
    train = frame[~(held & (from_end <= 1))].reset_index(drop=True)
    return Split(train=train, valid=valid, test=test,
                 name=f"leave-last-out(min_interactions={min_interactions})")


def _first_in_window(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp | None,
                     users: pd.Index) -> pd.DataFrame:
    inside = (frame[TS] >= start) & ((frame[TS] < end) if end is not None else True)
    window = frame[inside & frame[USER].isin(users)]
    return window.groupby(USER, sort=False).head(1).reset_index(drop=True)


def time_split(interactions: pd.DataFrame, *, cutoff: pd.Timestamp,
               valid_cutoff: pd.Timestamp | None = None) -> Split:
    """Split by calendar time: train is everything before `valid_cutoff` (or `cutoff`);
    the test target of a user is their first interaction at or after `cutoff`, the valid
    target their first in [`valid_cutoff`, `cutoff`). Only users with earlier history
    get a target (train for valid; train and valid for test).

    Interactions in the valid window after a user's first one are in none of the three
    frames (no model may learn from them before the valid targets): with a long valid
    window, test histories miss them."""
    cutoff = pd.Timestamp(cutoff)
    frame = as_interactions(interactions)
    if valid_cutoff is None:
        train = frame[frame[TS] < cutoff].reset_index(drop=True)
        valid = _empty()
    else:
        valid_cutoff = pd.Timestamp(valid_cutoff)
        if valid_cutoff >= cutoff:
            raise ValueError(f"valid_cutoff={valid_cutoff} is not before cutoff={cutoff}: "
                             "the valid window is [valid_cutoff, cutoff).")
        train = frame[frame[TS] < valid_cutoff].reset_index(drop=True)
        valid = _first_in_window(frame, valid_cutoff, cutoff, pd.Index(train[USER].unique()))
    known_users = pd.Index(pd.concat([train[USER], valid[USER]]).unique())
    test = _first_in_window(frame, cutoff, None, known_users)
    name = f"time(cutoff={cutoff.date()}" + (
        f", valid_cutoff={valid_cutoff.date()})" if valid_cutoff is not None else ")")
    return Split(train=train, valid=valid, test=test, name=name)


def history_before(interactions: pd.DataFrame, user: str, ts: pd.Timestamp,
                   n: int) -> list[dict[str, object]]:
    """The `user`'s last `n` interactions strictly before `ts`, oldest first, as records
    (dicts keyed by INTERACTION_COLUMNS). `core.recommender.fields` wants most recent first:
    reverse."""
    frame = as_interactions(interactions[interactions[USER] == user])
    before = frame[frame[TS] < pd.Timestamp(ts)]
    return before.tail(n).to_dict("records") if n > 0 else []


def histories_frame(known: pd.DataFrame, targets: pd.DataFrame, *, n: int | None = None,
                    same_time: bool = False) -> pd.DataFrame:
    """For every target row (one per user), the user's `known` interactions strictly before
    the target's ts: the last `n` of them (all with None), oldest first, as one frame
    (INTERACTION_COLUMNS) sorted by user and time.

    `same_time=True` also keeps known interactions stamped at the target's very ts. In a
    leave-last-out split those precede the target in the user's order (ties broken by
    item id), so the history is then "everything before the target in the sequence": the
    protocol of the reference ranking numbers. Never use it to build training examples."""
    if targets[USER].duplicated().any():
        raise ValueError("targets hold several rows for one user: histories are per user, "
                         "give one target row per user (a Split's valid or test frame).")
    if n is not None and n < 0:
        raise ValueError(f"n={n}: the number of history items must be >= 0.")
    frame = as_interactions(known)
    when = targets[[USER, TS]].rename(columns={TS: TARGET_TS})
    when = when.assign(**{USER: when[USER].astype(str),
                          TARGET_TS: pd.to_datetime(when[TARGET_TS])})
    joined = frame.merge(when, on=USER, how="inner")
    joined = joined[(joined[TS] <= joined[TARGET_TS]) if same_time
                    else (joined[TS] < joined[TARGET_TS])]
    out = as_interactions(joined[list(INTERACTION_COLUMNS)])
    if n is not None:
        out = out.groupby(USER, sort=False).tail(n).reset_index(drop=True)
    return out


def histories(known: pd.DataFrame, targets: pd.DataFrame, *,
              n: int) -> dict[str, pd.DataFrame]:
    """`{user: their last n known interactions strictly before their target, oldest
    first}` for every user in `targets` (an empty frame where there are none)."""
    frame = histories_frame(known, targets, n=n)
    grouped = {user: rows.reset_index(drop=True)
               for user, rows in frame.groupby(USER, sort=False)}
    empty = frame.iloc[0:0]
    return {user: grouped.get(user, empty) for user in targets[USER].astype(str)}
