"""Compile shap's numba kernels before the first real explanation.

shap's Exact, Permutation and Partition explainers JIT-compile numba functions on their
first call in a process, paid by whoever asks first. `warm_up()` runs each once on a stub
model (no transformer work); the server runs it before it serves (`dashboard.serve`), the
benchmark reports it as cold start.
"""

from __future__ import annotations

import functools
import threading
import time

import numpy as np

from core.recommender.fields import Field


def _stub(text_a, text_b) -> np.ndarray:
    return np.array([len(a) * 0.01 - len(b) * 0.02 for a, b in zip(text_a, text_b,
                                                                      strict=True)])


@functools.lru_cache(maxsize=1)
def warm_up() -> float:
    """Run every shap explainer once on a stub; returns the seconds it took (once per
    process: later calls return the first measurement)."""
    from explain.field_shap import FieldShapConfig, explain_fields
    from explain.token_shap import TokenShapConfig, explain_tokens

    started = time.perf_counter()
    fields = (Field("h1", "a", "purchased: warm up item | kitchen"),
              Field("ctx_day", "a", "day: weekday"),
              Field("item_title", "b", "title: warm up title words"),
              Field("item_price", "b", "price: under $10"),
              Field("item_brand", "b", "brand: warm"))
    explain_fields(_stub, fields, config=FieldShapConfig(exact_max_fields=4))
    explain_fields(_stub, fields, config=FieldShapConfig(exact_max_fields=8))
    explain_tokens(_stub, fields, "item_title", config=TokenShapConfig(max_evals=20))
    return time.perf_counter() - started


def warm_up_in_background() -> threading.Thread:
    """Start `warm_up` in a daemon thread (returns it)."""
    thread = threading.Thread(target=warm_up, name="explain-warm-up", daemon=True)
    thread.start()
    return thread
