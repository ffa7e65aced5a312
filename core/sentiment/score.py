"""Scoring every review in the warehouse with a saved sentiment model.

`score` gives every review a label, the class probabilities and the model's run id
(table review_sentiment), aggregates the word attributions (`SentimentClassifier.attribute`,
gradient x activation) into aspects per item, category and overall, each backed by at
least the floor of distinct reviewers (review_aspects), and keeps the attributions of
example reviews for the page (review_token_weights). The three tables are replaced in
one write transaction: they only ever hold one model's rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from core.config import Paths, PrivacyConfig
from core.registry.store import SENTIMENT
from core.sentiment import data as D
from core.sentiment import registry
from core.sentiment.model import Attribution, SentimentClassifier

SENTIMENT_COLUMNS = ("review_id", "run_id", "label", "p_negative", "p_neutral", "p_positive",
                     "scored_at")
ASPECT_COLUMNS = ("run_id",) + D.ASPECT_COLUMNS
TOKEN_WEIGHT_COLUMNS = ("run_id", "review_id", "spans")


@dataclass(frozen=True)
class ScoreConfig:
    """batch_size: reviews per forward pass. min_reviewers: the aspect floor (distinct
    reviewers; None: PrivacyConfig().min_cell_size). top_aspects: per scope and
    polarity. examples_per_label / disagreements: reviews whose word attributions are
    stored for the page."""

    batch_size: int = 64
    min_reviewers: int | None = None
    top_aspects: int = 15
    examples_per_label: int = 25
    disagreements: int = 100


@dataclass
class ScoreResult:
    """What `score` wrote, counted, and how long the model took."""

    run_id: str
    reviews: int
    labels: dict[str, int]  # reviews per predicted label
    aspects: int
    examples: int
    seconds: float  # prediction and attribution, without the warehouse write

    @property
    def reviews_per_second(self) -> float:
        return self.reviews / max(self.seconds, 1e-9)


def attribute_all(model: SentimentClassifier, texts: Sequence[str], *, batch_size: int = 64,
                  chunk: int = 512, progress: bool = False) -> list[Attribution]:
    """`model.attribute` over many texts in length-sorted chunks (with a progress bar),
    in input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[Attribution | None] = [None] * len(texts)
    bar = tqdm(total=len(texts), disable=not progress, desc="score reviews", unit="review")
    for start in range(0, len(order), chunk):
        rows = order[start:start + chunk]
        for i, attribution in zip(rows, model.attribute([texts[i] for i in rows],
                                                        batch_size=batch_size), strict=True):
            out[i] = attribution
        bar.update(len(rows))
    bar.close()
    return out  # type: ignore[return-value]


def _example_rows(frame: pd.DataFrame, config: ScoreConfig) -> np.ndarray:
    """Rows whose attributions the page shows: the most confident reviews of each label,
    and the strongest star/text disagreements."""
    confidence = frame[list(D.PROBABILITY_COLUMNS)].max(axis=1)
    picks = []
    for label in range(len(D.LABELS)):
        rows = frame.index[frame["predicted"] == label]
        picks.append(confidence.loc[rows].sort_values(ascending=False, kind="stable")
                     .index[:config.examples_per_label])
    stars = frame[D.RATING].round()
    disagree = frame.index[((stars >= 4) & (frame["predicted"] == D.NEGATIVE))
                           | ((stars <= 2) & (frame["predicted"] == D.POSITIVE))]
    picks.append(confidence.loc[disagree].sort_values(ascending=False, kind="stable")
                 .index[:config.disagreements])
    return np.unique(np.concatenate([np.asarray(p, dtype=np.int64) for p in picks]))


def _scored(reviews: pd.DataFrame, attributions: Sequence[Attribution]) -> pd.DataFrame:
    """`reviews` with the predicted class and the class probabilities."""
    proba = np.stack([a.probabilities for a in attributions]) if attributions \
        else np.zeros((0, len(D.LABELS)))
    return reviews.assign(predicted=proba.argmax(axis=1) if len(proba) else [],
                          **{c: proba[:, i] for i, c in enumerate(D.PROBABILITY_COLUMNS)})


def _sentiment_rows(frame: pd.DataFrame, run_id: str) -> pd.DataFrame:
    """One review_sentiment row per scored review, stamped now (UTC, naive)."""
    return pd.DataFrame({
        "review_id": frame[D.REVIEW_ID].astype(str), "run_id": run_id,
        "label": D.label_names(frame["predicted"]),
        **{c: frame[c].astype(float) for c in D.PROBABILITY_COLUMNS},
        "scored_at": datetime.now(UTC).replace(tzinfo=None),
    })


def _token_weight_rows(frame: pd.DataFrame, attributions: Sequence[Attribution],
                       run_id: str, config: ScoreConfig) -> pd.DataFrame:
    """The example reviews' word attributions: spans as JSON [[start, end, weight], ...]."""
    examples = _example_rows(frame, config) if len(frame) else np.zeros(0, np.int64)
    return pd.DataFrame({
        "run_id": run_id,
        "review_id": frame[D.REVIEW_ID].to_numpy()[examples].astype(str),
        "spans": [json.dumps([[s, e, round(float(w), 5)] for (s, e), w in
                              zip(attributions[i].spans, attributions[i].weights,
                                  strict=True)]) for i in examples],
    })


def _replace_tables(paths: Paths, tables: Sequence[tuple[str, pd.DataFrame, Sequence[str]]]
                    ) -> None:
    """Replace every row of each (table, rows, columns) in one write transaction."""
    from core.store.warehouse import write_transaction

    with write_transaction(paths) as con:
        for table, data, columns in tables:
            con.execute(f"DELETE FROM {table}")  # the newest model's rows only
            if len(data):
                con.register("new_rows", data[list(columns)])
                try:
                    con.execute(f"INSERT INTO {table} ({', '.join(columns)}) "
                                f"SELECT {', '.join(columns)} FROM new_rows")
                finally:
                    con.unregister("new_rows")


def score(paths: Paths | None = None, run_id: str | None = None,
          config: ScoreConfig = ScoreConfig(), *, progress: bool = True) -> ScoreResult:
    """Score every review with run `run_id` (None: the newest) and replace the
    review_sentiment, review_aspects and review_token_weights rows in one write.
    Raises RegistryError where there is no such run."""
    paths = paths or Paths()
    run_id = SENTIMENT.resolve(paths, run_id)
    model = registry.load(run_id, paths).model
    min_reviewers = config.min_reviewers or PrivacyConfig().min_cell_size
    started = time.perf_counter()
    reviews = D.load_reviews(paths)
    attributions = attribute_all(model, D.review_texts(reviews), batch_size=config.batch_size,
                                 progress=progress)
    seconds = time.perf_counter() - started
    frame = _scored(reviews, attributions)
    sentiment = _sentiment_rows(frame, run_id)
    rows = D.aspect_rows(frame, [a.words for a in attributions],
                         [a.weights for a in attributions])
    aspects = D.aggregate_aspects(rows, frame, min_reviewers=min_reviewers,
                                  top_k=config.top_aspects)
    aspects.insert(0, "run_id", run_id)
    weights = _token_weight_rows(frame, attributions, run_id, config)
    _replace_tables(paths, [("review_sentiment", sentiment, SENTIMENT_COLUMNS),
                            ("review_aspects", aspects, ASPECT_COLUMNS),
                            ("review_token_weights", weights, TOKEN_WEIGHT_COLUMNS)])
    counts = sentiment["label"].value_counts()
    return ScoreResult(run_id=run_id, reviews=len(sentiment),
                       labels={name: int(counts.get(name, 0)) for name in D.LABELS},
                       aspects=len(aspects), examples=len(weights), seconds=seconds)
