"""The rule for programs from outside Python (tests/external.py): a CI run fails where a
local run skips, and the line names what is missing."""

from __future__ import annotations

import pytest
from external import MISSING, in_ci, require, summary_lines


@pytest.fixture
def no_notes(monkeypatch: pytest.MonkeyPatch) -> list:
    """MISSING as it was before the test: what this test adds is taken out after it."""
    monkeypatch.setattr("external.MISSING", MISSING.copy())
    import external

    return external.MISSING


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_a_ci_run_fails_naming_what_is_missing(monkeypatch, no_notes, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception) as failed:
        require("MuseScore 3", None, "apt install musescore3")
    assert str(failed.value) == (
        f"MuseScore 3 is missing (apt install musescore3); a CI run (CI={value}) needs it"
    )
    assert no_notes == MISSING  # nothing noted: the run already failed


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_local_run_skips_and_lists_what_was_missing(monkeypatch, no_notes, value) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    assert require("MuseScore 3", "", "apt install musescore3") is False
    assert require("MuseScore 3", "", "apt install musescore3") is False  # listed once
    assert "missing, so skipped: MuseScore 3 (apt install musescore3)" in summary_lines()
    assert summary_lines().count("missing, so skipped: MuseScore 3 (apt install musescore3)") == 1


def test_what_is_there_runs_in_ci_and_locally(monkeypatch, no_notes) -> None:
    for value in ("true", ""):
        monkeypatch.setenv("CI", value)
        assert require("Chromium", "/usr/bin/chromium", "apt install chromium") is True
    assert no_notes == MISSING
