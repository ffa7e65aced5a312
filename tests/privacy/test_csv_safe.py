"""The one CSV formula guard: every leading character a spreadsheet reads as a formula
is neutralised, plain numbers stay numbers."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from privacy.csv_safe import FORMULA_STARTS, safe_cell, safe_row

PAYLOADS = ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "\n=1",
            "=cmd|' /C calc'!A0")


def test_the_guarded_characters():
    assert set(FORMULA_STARTS) == {"=", "+", "-", "@", "\t", "\r", "\n"}


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_each_leading_character_is_neutralised(start):
    assert safe_cell(start + "cmd") == "'" + start + "cmd"
    assert safe_cell(start) == "'" + start


@pytest.mark.parametrize("payload", PAYLOADS)
def test_formula_payloads_are_neutralised(payload):
    assert safe_cell(payload) == "'" + payload


@pytest.mark.parametrize("value,expected", [
    (-0.12, "-0.12"), ("-0.12", "-0.12"), (3, "3"), (np.int64(7), "7"),
    (np.float64(-1.5e-05), "-1.5e-05"), ("1e-5", "1e-5"), ("1e-05", "1e-05"), ("-0.5", "-0.5"),
    (None, ""), (float("nan"), ""), (math.inf, "inf"), (True, "true"), (False, "false"),
    ("Trail Bottle", "Trail Bottle"), ("plain text", "plain text"), ("a=b", "a=b"),
])
def test_plain_values_stay_as_they_are(value, expected):
    assert safe_cell(value) == expected


@pytest.mark.parametrize("value,expected", [
    ("+3", "'+3"),  # a leading "+" is a formula start even before digits
    ("-1+2", "'-1+2"),  # not a plain number: an expression
    (-math.inf, "'-inf"),
    ("\n", "'\n"),
])
def test_signs_and_line_ends_that_are_not_plain_numbers(value, expected):
    assert safe_cell(value) == expected


def test_a_row_read_back_by_a_spreadsheet_reader():
    row = safe_row(["=1+1", -0.25, "\nx", None, "ok"])
    assert row == ["'=1+1", "-0.25", "'\nx", "", "ok"]
    out = io.StringIO()
    csv.writer(out).writerow(row)
    (back,) = list(csv.reader(io.StringIO(out.getvalue())))
    assert back == row
    assert float(back[1]) == -0.25
