"""What a ranking model reads and which part of it learns: `ModelConfig`.

A run's ModelConfig travels with its model to the registry; `from_dict` loads the
configs of runs saved before a field existed with that field off.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

NEW_ITEM_DEPTH = 10  # the top list whose last places new items may take


@dataclass(frozen=True)
class ModelConfig:
    """What the model reads and which part of it learns.

    max_length: tokens of a joined pair; the candidate side gets at most `item_length`
        of them, the history side the rest. Each side is cut at its end.
    trainable_layers: top encoder layers that learn; the two sides meet at the first
        of them (at least 1).
    history_len: most recent interactions shown as history fields (h1..hN).
    negatives: negatives per training example (the group is 1 + negatives candidates).
    content_candidates / popular_candidates / co_visit_candidates: the cheap retrieval
        that the cross-encoder re-ranks at inference: the items closest to the mean
        MiniLM embedding of the user's history items, united with the most popular items
        of the training split and (a model with co-visits) the items most often bought
        with the history shown (`core.recommender.retrieval.CrossEncoderRecommender`).
    category_candidates: and the most popular items of each category among the history
        shown (this many per category; runs saved before it existed load with 0).
    new_item_slots: of each top 10, the last this many places go to the best-ranked new
        items (items outside the training data: no popularity released, no co-visits)
        when the model's own order has fewer of them there
        (`core.recommender.retrieval.with_new_item_slots`; at most NEW_ITEM_DEPTH - 1,
        runs saved before it existed load with 0). A new item has no purchase evidence
        to compete with the evidence of bought items, so without a slot it is never
        shown, however well its text matches.
    omit_fields: `core.recommender.fields` names the model never reads (always masked).
    prior_scale: initial weight of the zero-shot prior (0: no prior).
    popularity: the model reads the popularity feature (runs saved before the feature
        existed load without it).
    popularity_scale: its initial weight. 0 (the default) keeps the untrained model
        exactly the zero-shot prior; training learns how much popularity to add (a
        release too noisy to help, as on small catalogues, then stays near 0).
    popularity_log: with `popularity`, the mix also reads the percentile's log form
        (`core.recommender.fields.popularity_log_feature`), from the same field: runs saved
        before it existed load without it. popularity_log_scale: its initial weight.
    category_share: the model reads the category-share feature (runs saved before it
        existed load without it). category_share_scale: its initial weight (0: the
        untrained model stays the zero-shot prior; training learns it).
    co_visits: the model reads the co-visit feature (`core.recommender.co_visits`). Off by
        default; `clearmark train` asks for it, and a run keeps it for non-private runs
        only (`core.recommender.planning.model_config_for`: exact counts, no DP release).
        co_visit_scale: its initial weight.
    """

    max_length: int = 128
    item_length: int = 48
    trainable_layers: int = 1
    history_len: int = 5
    negatives: int = 4
    content_candidates: int = 50
    popular_candidates: int = 20
    omit_fields: tuple[str, ...] = ()
    prior_scale: float = 10.0
    popularity: bool = True
    popularity_scale: float = 0.0
    popularity_log: bool = True
    popularity_log_scale: float = 0.0
    category_share: bool = True
    category_share_scale: float = 0.0
    co_visits: bool = False
    co_visit_scale: float = 0.0
    co_visit_candidates: int = 20
    category_candidates: int = 10
    new_item_slots: int = 1

    def __post_init__(self) -> None:
        if not 8 <= self.item_length <= self.max_length - 8:
            raise ValueError(f"item_length={self.item_length}, max_length={self.max_length}: "
                             "each side needs at least 8 tokens.")
        if self.trainable_layers < 1:
            raise ValueError(f"trainable_layers={self.trainable_layers}: at least the top "
                             "layer learns (the two sides meet there).")
        if self.history_len < 1 or self.negatives < 1:
            raise ValueError(f"history_len={self.history_len}, negatives={self.negatives}: "
                             "both must be at least 1.")
        if min(self.content_candidates, self.popular_candidates,
               self.co_visit_candidates, self.category_candidates,
               self.new_item_slots) < 0 or (
                self.content_candidates + self.popular_candidates < 1):
            raise ValueError("content_candidates + popular_candidates must be at least 1 "
                             "(and no candidate count negative).")
        if self.new_item_slots >= NEW_ITEM_DEPTH:
            raise ValueError(f"new_item_slots={self.new_item_slots}: at most "
                             f"{NEW_ITEM_DEPTH - 1}; the model's own order keeps the first "
                             f"place of each top {NEW_ITEM_DEPTH}.")

    @property
    def history_length(self) -> int:
        return self.max_length - self.item_length

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> ModelConfig:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        known.setdefault("popularity", False)  # saved before the feature existed
        known.setdefault("co_visits", False)
        known.setdefault("category_share", False)
        known.setdefault("popularity_log", False)
        known.setdefault("category_candidates", 0)
        known.setdefault("new_item_slots", 0)
        return cls(**{**known, "omit_fields": tuple(known.get("omit_fields", ()))})


def mix_input_names(config: ModelConfig) -> tuple[str, ...]:
    """Inputs of the learnt mix, in order: the prior's cosine, then the popularity (and
    its log form), the category-share and the co-visit features that the model reads."""
    return ("prior", *(("popularity",) if config.popularity else ()),
            *(("popularity_log",) if config.popularity and config.popularity_log else ()),
            *(("category_share",) if config.category_share else ()),
            *(("co_visits",) if config.co_visits else ()))
