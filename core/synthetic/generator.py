"""Built-in synthetic data: raw exports as a marketing team would hand them over.

`generate(config, out_dir)` writes into `out_dir`:

- `customers.csv`, `items.csv`, `events.csv`, `reviews.csv`: the raw tables. They
  carry personal data on purpose (names, e-mail addresses, phone numbers; some
  review texts mention them), so pseudonymization and scrubbing at ingest are
  really exercised. E-mail domains are the reserved `example.*` ones and phone
  numbers come from the ranges that regulators keep for fiction where one exists.
- `<table>.mapping.toml` beside each CSV (canonical field = source column), so the
  files take the generic ingest path.
- `truth/`: the planted truth (latent category preferences, price and promotion
  sensitivity, item quality and popularity, which reviews mention personal data,
  the parameters and seed). It is for evaluation only and must never be ingested:
  it holds no mapping file and lives in a subfolder, which ingest skips.

The behaviour that makes the data learnable, in the order `generate` runs it:

1. Customers get a Dirichlet preference over categories concentrated on 1-3 of
   them, a preferred price level, a price sensitivity, a promotion sensitivity, a
   taste vector and a heavy-tailed activity; items get a latent quality, a
   Zipf-like popularity and a style vector close to their brand's.
2. Sessions are spread over each customer's active window following a daily
   intensity (trend, month, weekday, promotion windows) and an hour-of-day profile.
3. Interactions (one item each) are drawn in order for all customers at once, one
   step at a time: mostly an item of a preferred category (seasonally reweighted),
   among candidates drawn by popularity x quality the one with the best price fit
   and taste match; after a purchase often the complement category
   (`vocabulary.COMPLEMENTS`) or its matching kind of product; within a session
   often the same category or kind of product (comparing alternatives); a clicked
   but unbought item is often revisited; some exploration at random.
4. Each interaction runs the funnel view -> click -> add_to_cart -> purchase on
   its item; every step is likelier for good, well-priced, preferred items, and
   purchase much likelier inside promotion windows for promotion-sensitive people.
5. A share of purchases gets a review whose stars follow the experience (quality,
   price fit, the reviewer's leniency, noise) and whose text is built from phrase
   banks that agree with the stars; a share of reviews mentions the reviewer's
   name, e-mail address or phone number.

Same config and seed give byte-identical files.

Modules: `model` (configuration and the model's parameters), `vocabulary` (the
embedded words and names), `timeline` (calendar and promotions), `population` (items
and customers' traits), `activity` (steps 2-4), `customers` (identities), `reviews`
(step 5), `write` (files and truth).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.synthetic.activity import make_events, make_sessions, simulate_interactions
from core.synthetic.customers import make_customers_table
from core.synthetic.model import GeneratorConfig, default_item_count
from core.synthetic.population import make_items, make_people
from core.synthetic.reviews import make_reviews
from core.synthetic.timeline import build_calendar, promotion_windows
from core.synthetic.write import TABLES, write_tables, write_truth

__all__ = ["GeneratedFiles", "GeneratorConfig", "default_item_count", "generate",
           "promotion_windows"]


@dataclass(frozen=True)
class GeneratedFiles:
    """Where `generate` wrote what. `truth_dir` is for evaluation only: never ingest it."""

    out_dir: Path
    tables: dict[str, Path]  # table -> CSV
    mappings: dict[str, Path]  # table -> mapping TOML beside the CSV
    rows: dict[str, int]  # table -> data rows written
    truth_dir: Path
    seconds: float = field(default=0.0, compare=False)

    def __str__(self) -> str:
        counts = ", ".join(f"{self.rows[t]:,} {t}" for t in TABLES)
        return f"{counts} in {self.out_dir} (truth, not for ingest: {self.truth_dir})"


def generate(config: GeneratorConfig, out_dir: Path, *, progress: bool = True) -> GeneratedFiles:
    """Write the raw tables, their mapping files and `truth/` into `out_dir` (created
    if missing; files of an earlier run are overwritten). `progress` shows a bar."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    bar = tqdm(total=7, desc="generate", unit="stage", disable=not progress, leave=False)

    def stage(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    calendar = build_calendar(config)
    items, item_truth = make_items(config, rng)
    stage("items")
    people = make_people(config, rng)
    stage("customers")
    sessions = make_sessions(config, calendar, people, rng)
    stage("sessions")
    inter = simulate_interactions(calendar, people, item_truth, sessions, rng, bar)
    stage("interactions")
    events, ev_time, ev_inter = make_events(config, calendar, people["customer_id"],
                                            item_truth["item_id"], sessions, inter, rng)
    customers = make_customers_table(config, people, sessions, ev_time, ev_inter, rng)
    stage("events")
    reviews, review_pii = make_reviews(config, people, item_truth, ev_time, ev_inter,
                                       events, inter, rng)
    stage("reviews")

    frames = {"customers": customers, "items": items, "events": events, "reviews": reviews}
    tables, mappings = write_tables(frames, out_dir)
    truth_dir = write_truth(config, out_dir / "truth", people, item_truth, review_pii,
                            calendar)
    stage("written")
    bar.close()
    rows = {t: len(frames[t]) for t in TABLES}
    return GeneratedFiles(out_dir=out_dir, tables=tables, mappings=mappings, rows=rows,
                          truth_dir=truth_dir, seconds=time.perf_counter() - started)
