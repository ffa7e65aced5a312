"""CSV cells that a spreadsheet will not run as formulas (OWASP "CSV injection").

Item titles, review text, run ids and anything else a third party wrote may start
with `=`, `+`, `-`, `@`, a tab, a carriage return or a line feed, which Excel,
LibreOffice and Google Sheets read as the start of a formula (`=HYPERLINK(...)`
exfiltrates data when clicked). Such a cell is neutralised by prefixing a single
quote, which the spreadsheet shows as text. Plain numbers are left alone, so `-0.12`
stays a number; a number written with a leading `+` is neutralised like any other
text that starts with `+`. Every CSV export of the project (explanations, campaign
audiences, the privacy audit) writes its cells through `safe_cell`.

    safe_cell("=HYPERLINK(\"http://x\")")  -> "'=HYPERLINK(\"http://x\")"
    safe_cell("+1") -> "'+1";  safe_cell("-0.12") -> "-0.12";  safe_cell(-0.12) -> "-0.12"
    safe_cell(None) -> "";  safe_cell(float("nan")) -> "";  safe_cell(True) -> "true"

Imports nothing from the rest of the project.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from numbers import Integral, Number

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
PLAIN_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def safe_cell(value: object) -> str:
    """The text of one CSV cell, neutralised where a spreadsheet would see a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Number):
        number = float(value)  # type: ignore[arg-type]
        if math.isnan(number):
            return ""
        if math.isinf(number):
            return "inf" if number > 0 else "'-inf"
        return repr(int(value)) if isinstance(value, Integral) else repr(number)
    text = str(value)
    if PLAIN_NUMBER.fullmatch(text):
        return text
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def safe_row(values: Iterable[object]) -> list[str]:
    """`safe_cell` of every value, in order."""
    return [safe_cell(v) for v in values]
