"""Import what the pages import, once per server process, in the background.

The first visit to a page otherwise pays for its imports (plotly, pandas' extensions,
torch for the model registry, the campaign and audit modules): two to four seconds on
2 cores before anything is drawn. The entry file starts this as soon as the server
runs its first session, so by the time a user opens a second page its modules are
already loaded. Then shap's numba kernels are compiled on a stub model
(`explain.warmup`, 3-5 s the first explanation would otherwise wait for). No data is
read (the pages' cached queries depend on the snapshot at the time they run).
"""

from __future__ import annotations

import ast
import importlib
import threading
from pathlib import Path

_LOCK = threading.Lock()
_STARTED: set[Path] = set()


def imported_modules(views_dir: Path) -> list[str]:
    """Absolute module names imported anywhere in the page scripts of `views_dir`
    (top level and inside functions), sorted, each once. `from a import b` gives `a`
    and `a.b` (b may be a submodule, such as `core.registry`; when it is a class or a
    function, importing `a.b` fails harmlessly)."""
    names: set[str] = set()
    for script in sorted(views_dir.glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return sorted(names)


def _import_all(names: list[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a page that needs it reports the error itself
            continue


def _warm(names: list[str]) -> None:
    _import_all(names)
    from explain.warmup import warm_up

    warm_up()


def warm_up_once(views_dir: Path) -> threading.Thread | None:
    """Start importing the pages' modules in a daemon thread, the first time this is
    called for `views_dir` in this process; later calls return None at once."""
    views_dir = views_dir.resolve()
    with _LOCK:
        if views_dir in _STARTED:
            return None
        _STARTED.add(views_dir)
    thread = threading.Thread(target=_warm, args=(imported_modules(views_dir),),
                              name="clearmark-warm-imports", daemon=True)
    thread.start()
    return thread
