"""The catalogue and the customers' latent traits, before any activity.

Draws from the caller's random generator in a fixed order, so one seed gives one
catalogue and one population.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core import columns as C
from core.synthetic.model import NOUNS_PER_CATEGORY, STYLE_DIM, GeneratorConfig
from core.synthetic.vocabulary import CATEGORIES, CATEGORY_NAMES, CITIES, FIRST_NAMES, LAST_NAMES

# Suffixes that tell apart items whose title would otherwise repeat.
_TITLE_VARIANTS = ("II", "Plus", "Pro", "Mini", "XL", "Classic", "Lite", "Max")


def make_ids(prefix: str, n: int, least_width: int) -> np.ndarray:
    """`n` ids `prefix` + 1-based zero-padded number, at least `least_width` digits."""
    width = max(least_width, len(str(n)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(1, n + 1)], dtype=object)


def make_items(config: GeneratorConfig, rng: np.random.Generator,
               ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The catalogue export (one row per item), and each item's truth: category index,
    latent quality, popularity (sums to 1), price, price_z, style, noun group and noun."""
    n = config.items
    category = _item_categories(n, rng)
    quality = rng.normal(0.0, 1.0, n)
    popularity = _popularity(quality, rng)
    price, price_z = _prices(category, rng)
    picks = rng.integers(0, 1 << 30, (n, 6))
    style = _styles(category, picks, rng)
    noun_of = picks[:, 2] % NOUNS_PER_CATEGORY
    titles, brands, nouns, descriptions = _item_texts(category, noun_of, picks)

    item_ids = make_ids("P", n, 5)
    table = pd.DataFrame({
        C.ITEM_ID: item_ids,
        C.TITLE: _unique_titles(titles),
        C.BRAND: brands,
        C.CATEGORY: np.array(CATEGORY_NAMES, dtype=object)[category],
        C.PRICE: price,
        C.DESCRIPTION: descriptions,
    })
    truth = {"item_id": item_ids, "category": category, "quality": quality,
             "popularity": popularity, "price": price, "price_z": price_z, "style": style,
             "noun_group": category * NOUNS_PER_CATEGORY + noun_of,
             "noun": np.array(nouns, dtype=object)}  # the noun, for review text
    return table, truth


def _item_categories(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) category index per item: at least 2 per category, the rest by market share
    (largest remainder), in random order."""
    k = len(CATEGORIES)
    shares = np.array([c.share for c in CATEGORIES])
    quota = 2 + shares / shares.sum() * (n - 2 * k)
    counts = np.floor(quota).astype(np.int64)
    counts[np.argsort(-(quota - counts), kind="stable")[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(k), counts))


def _popularity(quality: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like popularity (sums to 1) whose rank loosely follows quality: good items
    tend to be popular."""
    n = len(quality)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-(0.5 * quality + rng.normal(0.0, 1.0, n)), kind="stable")] = np.arange(n)
    popularity = 1.0 / (rank + 1.0) ** 0.7
    return popularity / popularity.sum()


def _prices(category: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shelf prices (log-normal around the category's median, ending in .99) and their
    log price in the category's standard units."""
    medians = np.array([c.price_median for c in CATEGORIES])
    sigmas = np.array([c.price_sigma for c in CATEGORIES])
    price_z = rng.normal(0.0, 1.0, len(category))
    price = np.maximum(np.round(medians[category] * np.exp(sigmas[category] * price_z)), 2.0)
    price = price - 0.01
    price_z = (np.log(price) - np.log(medians[category])) / sigmas[category]
    return price, price_z


def _styles(category: np.ndarray, picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, STYLE_DIM) style vectors. Items of one brand look alike (the brand is
    `picks[:, 0]` modulo the category's brands), so brand loyalty shows in the text too."""
    n_brands = max(len(c.brands) for c in CATEGORIES)
    brand_style = rng.normal(0.0, 1.0, (len(CATEGORIES), n_brands, STYLE_DIM))
    brands_in = np.array([len(c.brands) for c in CATEGORIES])
    brand_of = picks[:, 0] % brands_in[category]
    noise = rng.normal(0.0, 1.0, (len(category), STYLE_DIM))
    return 0.8 * brand_style[category, brand_of] + 0.6 * noise


def _item_texts(category: np.ndarray, noun_of: np.ndarray, picks: np.ndarray,
                ) -> tuple[list[str], list[str], list[str], list[str]]:
    """Titles (possibly repeated), brands, lower-case nouns and descriptions, built from
    the category's vocabulary by `picks` (columns: brand, adjective, -, feature, use,
    whether the use is named)."""
    titles, brands, nouns, descriptions = [], [], [], []
    for i in range(len(category)):
        spec = CATEGORIES[category[i]]
        p = picks[i]
        brand = spec.brands[p[0] % len(spec.brands)]
        adjective = spec.adjectives[p[1] % len(spec.adjectives)]
        noun = spec.nouns[noun_of[i]]
        feature = spec.features[p[3] % len(spec.features)]
        use = spec.uses[p[4] % len(spec.uses)]
        titles.append(f"{brand} {adjective} {noun}")
        brands.append(brand)
        nouns.append(noun.lower())
        sentence = f"{adjective} {noun.lower()} from {brand}, made with {feature}."
        if p[5] % 3:
            sentence += f" Ideal for {use}."
        descriptions.append(sentence)
    return titles, brands, nouns, descriptions


def _unique_titles(titles: list[str]) -> list[str]:
    """The titles, the 2nd, 3rd ... repeat of one suffixed with a variant name."""
    titles_s = pd.Series(titles)
    repeat = titles_s.groupby(titles_s).cumcount().to_numpy()
    variants = _TITLE_VARIANTS
    return [t if r == 0 else f"{t} {variants[(r - 1) % len(variants)]}"
            + (f" {(r - 1) // len(variants) + 2}" if r > len(variants) else "")
            for t, r in zip(titles, repeat, strict=True)]


def make_people(config: GeneratorConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Latent traits of the customers (one row each): id, category preference `pref`
    (n, categories; rows sum to 1), price level and sensitivity, promotion sensitivity,
    activity (mean 1), review leniency, taste, name indices, city index and age."""
    n = config.customers
    pref = _category_preferences(n, rng)
    activity_sigma = 1.0
    activity = rng.lognormal(-0.5 * activity_sigma**2, activity_sigma, n)  # mean 1
    first_name = rng.integers(0, len(FIRST_NAMES), n)
    last_name = rng.integers(0, len(LAST_NAMES), n)
    city_w = np.array([c.weight for c in CITIES])
    return {
        "customer_id": make_ids("C", n, 6),
        "pref": pref,
        "price_level": rng.normal(0.0, 0.7, n),  # preferred price, in category std units
        "price_sensitivity": rng.lognormal(0.0, 0.5, n),
        "promo_sensitivity": rng.beta(1.5, 2.5, n),
        "activity": activity,
        "leniency": rng.normal(0.0, 0.35, n),
        "taste": rng.normal(0.0, 1.0, (n, STYLE_DIM)),
        "first": first_name,
        "last": last_name,
        "city": rng.choice(len(CITIES), size=n, p=city_w / city_w.sum()),
        "age": np.clip(np.round(18 + rng.gamma(3.0, 7.5, n)), 18, 85).astype(np.int64),
    }


def _category_preferences(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, categories) preference, rows summing to 1: 1-3 favourites (Gumbel top-k by
    market share), Dirichlet-like weights on them, a little mass everywhere."""
    k = len(CATEGORIES)
    shares = np.array([c.share for c in CATEGORIES])
    n_fav = rng.choice([1, 2, 3], size=n, p=[0.35, 0.40, 0.25])
    order = np.argsort(-(np.log(shares) + rng.gumbel(size=(n, k))), axis=1)  # (n, k)
    weights = rng.gamma(2.0, 1.0, size=(n, k)) * (np.arange(k) < n_fav[:, None])
    focused = np.zeros((n, k))
    np.put_along_axis(focused, order, weights, axis=1)
    focused /= focused.sum(axis=1, keepdims=True)
    return 0.85 * focused + 0.15 * rng.dirichlet(np.full(k, 0.5), size=n)
