"""The background warm-up finds every page's imports and starts once per process."""

import sys
from pathlib import Path

from dashboard import warm

VIEWS = Path(__file__).resolve().parents[2] / "dashboard" / "views"


def test_imported_modules_include_nested_and_from_imports(tmp_path):
    (tmp_path / "a.py").write_text("import json\nfrom core import registry\n"
                                   "def f():\n    import decimal\n")
    (tmp_path / "b.py").write_text("from . import sibling\nimport json, fractions\n")
    assert warm.imported_modules(tmp_path) == ["core", "core.registry", "decimal", "fractions",
                                               "json"]


def test_the_pages_imports_are_found():
    names = set(warm.imported_modules(VIEWS))
    # core.registry (torch) is imported inside the campaigns page, after its data checks
    assert {"plotly.express", "dashboard.data", "core.campaigns", "core.registry"} <= names


def test_warm_up_imports_once_per_directory(tmp_path):
    (tmp_path / "page.py").write_text("import colorsys\n")
    sys.modules.pop("colorsys", None)
    thread = warm.warm_up_once(tmp_path)
    assert thread is not None
    thread.join(timeout=30)
    assert "colorsys" in sys.modules
    assert warm.warm_up_once(tmp_path) is None


def test_a_module_that_fails_to_import_does_not_stop_the_others(tmp_path):
    (tmp_path / "page.py").write_text("import no_such_module_here\nimport wave\n")
    sys.modules.pop("wave", None)
    thread = warm.warm_up_once(tmp_path)
    thread.join(timeout=30)
    assert "wave" in sys.modules
