"""Training examples for the cross-encoder, grouped by customer.

An example is one moment of a customer's training history: the target interaction
(label 1), the customer's last `history_len` interactions strictly before it (most
recent first), the context of the target (season and weekday of its ts, its promotion
flag) and `negatives` items they did not interact with (label 0). The model reads each
(history + context, candidate) pair as text through `core.recommender.fields` (`build_input`, then
`to_text_pair`), so the explanation code can mask the same named fields later.

Privacy unit = the customer. Every example carries its own negatives (no in-batch
negatives: a loss that mixes customers breaks per-example clipping), each customer
keeps at most `max_per_customer` examples (their most recent targets), and
`CustomerDataset[i]` is ONE of customer i's example groups, drawn at random on each
access. Poisson sampling over customers plus Opacus' per-sample clipping therefore
clips what one customer contributes to a step: the epsilon is user-level.

Negatives: about half from the target's category (harder: same kind of item), the rest
from the catalogue, uniform by default. With `hard_share > 0` that share of them comes
first from the items closest to the example's history by the frozen MiniLM embedding of
item text (what the content retrieval puts before the model at inference, so the model
learns to re-rank what it will be shown); they depend on the customer's own history and
the catalogue only, so they are safe under DP. `negative_weighting="popularity"` draws the rest
by training popularity: better negatives, but then one customer's examples depend on the
other customers' data, which the DP-SGD analysis does not cover;
`core.recommender.config.TrainConfig` allows it for non-private runs only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from core.recommender.co_visits import CoVisits
from core.recommender.fields import ModelInput, build_input, to_text_pair
from core.store.interactions import EVENT_TYPE, ITEM, PROMOTION, TS, USER, as_interactions

NEGATIVE_WEIGHTINGS = ("uniform", "popularity")


@dataclass(frozen=True)
class ExampleConfig:
    history_len: int = 5  # interactions shown before the target, most recent first
    negatives: int = 4  # per example; the group has 1 + negatives candidates
    same_category_share: float = 0.5  # of the negatives, drawn from the target's category
    negative_weighting: str = "uniform"  # the other negatives: "uniform" or "popularity"
    max_per_customer: int = 8  # the most recent targets of each customer
    hard_share: float = 0.0  # of the negatives, drawn from the history's content neighbours
    hard_pool: int = 20  # how many content neighbours those are drawn from
    seed: int = 0

    def __post_init__(self) -> None:
        if self.history_len < 1 or self.negatives < 1 or self.max_per_customer < 1:
            raise ValueError(f"history_len={self.history_len}, negatives={self.negatives}, "
                             f"max_per_customer={self.max_per_customer}: each must be >= 1.")
        if not 0.0 <= self.same_category_share <= 1.0 or not 0.0 <= self.hard_share <= 1.0:
            raise ValueError(f"same_category_share={self.same_category_share}, hard_share="
                             f"{self.hard_share}: shares lie in [0, 1].")
        if self.negative_weighting not in NEGATIVE_WEIGHTINGS:
            raise ValueError(f"negative_weighting={self.negative_weighting!r}: choose one of "
                             f"{NEGATIVE_WEIGHTINGS}.")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ExampleGroup:
    """One training example: candidates[0] is the target, the rest its negatives."""

    user: str
    ts: pd.Timestamp  # of the target
    promotion: bool | None  # of the target (None: unknown)
    history: tuple[tuple[str, str, pd.Timestamp], ...]  # (event_type, item_id, ts), newest 1st
    candidates: tuple[str, ...]  # item ids: the positive first

    @property
    def positive(self) -> str:
        return self.candidates[0]

    @property
    def negatives(self) -> tuple[str, ...]:
        return self.candidates[1:]


def item_records(catalogue: pd.DataFrame) -> dict[str, dict[str, object]]:
    """{item_id: catalogue row as a dict} (what `core.recommender.fields` reads of an item)."""
    rows = catalogue.assign(**{ITEM: catalogue[ITEM].astype(str)}).drop_duplicates(ITEM)
    return {r[ITEM]: r for r in rows.to_dict("records")}


def _record(items: Mapping[str, Mapping[str, object]], item_id: str) -> Mapping[str, object]:
    return items.get(item_id) or {ITEM: item_id}


def _promotion(value: object) -> bool | None:
    return None if value is None or pd.isna(value) else bool(value)


def model_input(history: Sequence[tuple[str, str]], ts: pd.Timestamp | None,
                promotion: bool | None, candidate: str,
                items: Mapping[str, Mapping[str, object]], *,
                co_visits: CoVisits | None = None, own: frozenset[str] = frozenset(),
                with_share: bool = False) -> ModelInput:
    """The named fields of one (history, context, candidate); `history` is
    (event_type, item_id) pairs, most recent first. With `co_visits` (a model that
    reads them) the candidate's co-visit score against the history shown, leaving the
    customer's `own` items out of the counts (training examples); `with_share`: the
    candidate's category share of the history shown (a model that reads it)."""
    value = None if co_visits is None else co_visits.score(
        [item for _, item in history], candidate, own=own)
    return build_input([(kind, _record(items, item)) for kind, item in history], ts,
                       promotion, _record(items, candidate), co_visits=value,
                       with_share=with_share)


def group_text_pairs(group: ExampleGroup, items: Mapping[str, Mapping[str, object]], *,
                     omit: frozenset[str] = frozenset(), co_visits: CoVisits | None = None,
                     own: frozenset[str] = frozenset(), with_share: bool = False
                     ) -> tuple[list[str], list[str]]:
    """The (text_a, text_b) pairs of a group's candidates, in candidate order, without
    the `omit` fields (a model's `omit_fields`); `co_visits`, `own` and `with_share` as
    in `model_input`."""
    history = [(kind, item) for kind, item, _ in group.history]
    pairs = [to_text_pair(model_input(history, group.ts, group.promotion, c, items,
                                      co_visits=co_visits, own=own,
                                      with_share=with_share),
                          masked=omit) for c in group.candidates]
    return [a for a, _ in pairs], [b for _, b in pairs]


def _draw(rng: np.random.Generator, pool: np.ndarray, weights: np.ndarray | None,
          n: int) -> list[str]:
    """Up to n distinct items of `pool` (weights need not be normalised)."""
    n = min(n, len(pool))
    if n == 0:
        return []
    p = None if weights is None else weights / weights.sum()
    return list(rng.choice(pool, size=n, replace=False, p=p))


def build_examples(train: pd.DataFrame, catalogue: pd.DataFrame,
                   config: ExampleConfig = ExampleConfig(), *,
                   item_embeddings: np.ndarray | None = None) -> list[ExampleGroup]:
    """Example groups from `train` interactions, ranked against `catalogue` items.

    For each customer: every interaction with at least one interaction strictly before
    it is a possible target; the last `max_per_customer` of them are kept. Negatives are
    catalogue items the customer never interacted with in `train`. A target with fewer
    than `negatives` possible negatives is skipped (only on tiny catalogues).

    `item_embeddings` (one unit row per catalogue item, in sorted item id order) are
    needed for `hard_share > 0`; None computes them (`core.minilm.embed_texts`)."""
    frame = as_interactions(train)
    rng = np.random.default_rng(config.seed)
    catalogue_ids = np.array(sorted(catalogue[ITEM].astype(str).unique()), dtype=object)
    category = (catalogue.assign(**{ITEM: catalogue[ITEM].astype(str)})
                .drop_duplicates(ITEM).set_index(ITEM)["category"]
                .reindex(catalogue_ids))
    by_category = {c: np.array(sorted(ids), dtype=object)
                   for c, ids in category.dropna().groupby(category.dropna()).groups.items()}
    if config.negative_weighting == "popularity":
        counts = frame[ITEM].value_counts().reindex(catalogue_ids, fill_value=0)
        weights = counts.to_numpy(dtype=np.float64) + 1.0  # unseen items stay possible
    else:
        weights = None
    n_hard = round(config.negatives * config.hard_share)
    n_same = round((config.negatives - n_hard) * config.same_category_share)
    column = {item: c for c, item in enumerate(catalogue_ids)}
    if n_hard and item_embeddings is None:
        from core.minilm import embed_texts
        from core.recommender.baselines import item_text

        records = item_records(catalogue)
        item_embeddings = embed_texts([item_text(records[i]) for i in catalogue_ids])

    groups: list[ExampleGroup] = []
    for user, rows in frame.groupby(USER, sort=True):
        kinds = rows[EVENT_TYPE].tolist()
        item_ids = rows[ITEM].tolist()
        stamps = list(rows[TS])
        promos = rows[PROMOTION].tolist()
        own = set(item_ids)
        allowed = ~np.isin(catalogue_ids, list(own))
        targets = [j for j in range(len(rows)) if stamps[0] < stamps[j]]  # history exists
        for j in targets[-config.max_per_customer:]:
            before = [i for i in range(j) if stamps[i] < stamps[j]]
            history = tuple((kinds[i], item_ids[i], stamps[i])
                            for i in reversed(before[-config.history_len:]))
            negatives: list[str] = []
            if n_hard:
                shown = [column[i] for _, i, _ in history if i in column]
                if shown:
                    sims = item_embeddings @ item_embeddings[shown].mean(axis=0)  # (I,)
                    sims[~allowed] = -np.inf
                    near = np.argsort(-sims, kind="stable")[:config.hard_pool]
                    near = near[np.isfinite(sims[near])]
                    negatives = _draw(rng, catalogue_ids[near], None, n_hard)
            same = by_category.get(category.get(item_ids[j]), np.array([], dtype=object))
            same = same[~np.isin(same, list(own) + negatives)]
            negatives += _draw(rng, same, None, n_same)
            rest = allowed & ~np.isin(catalogue_ids, negatives)
            negatives += _draw(rng, catalogue_ids[rest],
                               None if weights is None else weights[rest],
                               config.negatives - len(negatives))
            if len(negatives) < config.negatives:
                continue
            groups.append(ExampleGroup(user=str(user), ts=stamps[j],
                                       promotion=_promotion(promos[j]), history=history,
                                       candidates=(item_ids[j], *negatives)))
    return groups


def listwise_loss(logits: torch.Tensor) -> torch.Tensor:
    """Per-customer softmax cross-entropy over its group, positive at index 0.

    logits (B, G) -> losses (B,): each row depends on one customer's group only."""
    return -torch.log_softmax(logits, dim=1)[:, 0]  # (B,)


class CustomerDataset(Dataset):
    """Item i = one randomly drawn example group of customer i, as the model's input:
    (hidden (G, L, H), mask (G, L), prior (G,)) for its G = 1 + negatives pairs.

    `pair_states(text_a, text_b) -> (hidden, mask)` is the model's joined lower-layer
    states (`CrossEncoder.pair_states`, cached per text); `prior(text_a, text_b)` its
    zero-shot prior (zeros without one). With `co_visits`, each customer's examples read
    the co-visit scores with their `own` items left out. Computing on access keeps
    memory flat for many customers."""

    def __init__(self, groups: Sequence[ExampleGroup],
                 items: Mapping[str, Mapping[str, object]], *,
                 pair_states: Callable[[Sequence[str], Sequence[str]],
                                       tuple[torch.Tensor, torch.Tensor]],
                 prior: Callable[[Sequence[str], Sequence[str]], np.ndarray] | None = None,
                 omit: frozenset[str] = frozenset(), seed: int = 0,
                 co_visits: CoVisits | None = None,
                 own: Mapping[str, frozenset[str]] | None = None, with_share: bool = False):
        by_user: dict[str, list[ExampleGroup]] = {}
        for group in groups:
            by_user.setdefault(group.user, []).append(group)
        sizes = {len(g.candidates) for g in groups}
        if len(sizes) > 1:
            raise ValueError(f"example groups of different sizes {sorted(sizes)}: build them "
                             "with one ExampleConfig.")
        self.customers = sorted(by_user)
        self.groups = [by_user[u] for u in self.customers]
        self.items = items
        self.pair_states = pair_states
        self.prior = prior
        self.omit = frozenset(omit)
        self.co_visits = co_visits
        self.own = own or {}
        self.with_share = with_share
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.customers)

    def group(self, i: int) -> ExampleGroup:
        """A random one of customer i's (at most max_per_customer) groups."""
        options = self.groups[i]
        return options[int(self.rng.integers(len(options)))]

    def text_pairs(self, i: int) -> tuple[list[str], list[str]]:
        """The text pairs of one of customer i's groups (`group`)."""
        return group_text_pairs(self.group(i), self.items, omit=self.omit,
                                co_visits=self.co_visits,
                                own=self.own.get(self.customers[i], frozenset()),
                                with_share=self.with_share)

    def mix_features(self, i: int) -> np.ndarray:
        """The prior's inputs of one of customer i's groups, (G,) or (G, F): what the
        learnt mix reads, without the encoder's states."""
        text_a, text_b = self.text_pairs(i)
        if self.prior is None:
            return np.zeros(len(text_a), dtype=np.float32)
        return np.asarray(self.prior(text_a, text_b), dtype=np.float32)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]
                     ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The items of a whole batch (torch's DataLoader calls this with the batch's
        indices). Every new text of the batch goes through the frozen layers and the
        prior's encoder together, sorted by length: one small forward pass per customer
        kept the CPU's matrix units idle and cost several times as much."""
        pairs = [self.text_pairs(i) for i in indices]
        if not pairs:
            return []
        text_a = [a for texts, _ in pairs for a in texts]
        text_b = [b for _, texts in pairs for b in texts]
        hidden, mask = self.pair_states(text_a, text_b)  # (N*G, L, H), (N*G, L)
        prior = (np.zeros(len(text_a), dtype=np.float32) if self.prior is None
                 else np.asarray(self.prior(text_a, text_b), dtype=np.float32))
        prior = torch.from_numpy(prior)
        out, start = [], 0
        for texts, _ in pairs:
            rows = slice(start, start + len(texts))
            length = int(mask[rows].sum(dim=1).max())  # this group's longest pair
            out.append((hidden[rows, :length], mask[rows, :length], prior[rows]))
            start += len(texts)
        return out


def collate_groups(batch: Sequence[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Pad groups to the batch's longest pair and stack: hidden (B, G, L, H),
    mask (B, G, L), prior (B, G)."""
    length = max(int(hidden.shape[1]) for hidden, _, _ in batch)
    hidden = torch.stack([nn.functional.pad(h, (0, 0, 0, length - h.shape[1]))
                          for h, _, _ in batch])
    mask = torch.stack([nn.functional.pad(m, (0, length - m.shape[1])) for _, m, _ in batch])
    prior = torch.stack([p for _, _, p in batch])
    return hidden, mask, prior
