"""The loader's rows: good rows parse, bad rows are rejected by the line an editor shows."""

from __future__ import annotations

import pytest

from shared.dip.loader import Rejected, parse_rows
from tests.support.customers import MIXED


def test_rows_validate_with_editor_line_numbers() -> None:
    items = list(parse_rows(MIXED.splitlines(keepends=True), "US"))
    rejected = {r.line: r.reason for r in items if isinstance(r, Rejected)}
    assert sorted(rejected) == [3, 4, 5, 6, 7]
    assert "customerId" in rejected[3]
    # A reason names the field and never quotes its value: it reaches terminals and logs.
    assert "phone" in rejected[4] and "not-a-phone" not in rejected[4]
    assert "perhaps" not in rejected[6]
    assert "tier" in rejected[5]
    assert "isVip" in rejected[6]
    assert "too many fields" in rejected[7]


def test_a_header_without_required_columns_is_an_error() -> None:
    with pytest.raises(ValueError, match="tier"):
        list(parse_rows(["customerId,phone,isVip\n", "C-1,,true\n"], "US"))
