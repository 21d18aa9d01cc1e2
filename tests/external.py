"""What the end-to-end tests need from outside Python: Chromium and Playwright, MuseScore,
the FluidR3 soundfont, atheris. One rule for all of them, here:

- found: the test runs;
- missing, and CI is set (`CI=true`, as `.ci/run` and every CI service set it): the test
  fails with one line naming what is missing and how to install it, so a green CI run has
  run every end-to-end test;
- missing on a developer's machine: the test is skipped, and the end of the run lists what
  was missing (a skip is easy to miss among dots).

Not a test module. As a mark, on a test or a module (`pytestmark = requires(...)`):

    from external import requires

    @requires("MuseScore 3", shutil.which("mscore3"), "apt install musescore3")
    def test_musescore_reads_the_export(...): ...

or inline, when a test has a fallback of its own:

    if require("atheris", atheris is not None, "pip install atheris"):
        ...  # the real thing
    else:
        ...  # the local fallback (CI never gets here: it failed)

tests/conftest.py applies the mark and prints the list.
"""

from __future__ import annotations

import os

import pytest

# What a local run found missing: (what, how to install it), each once, in order met.
MISSING: list[tuple[str, str]] = []


def in_ci() -> bool:
    """Whether this run is CI's: $CI set to anything but empty, 0 or false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def requires(what: str, found: object, install: str) -> pytest.MarkDecorator:
    """A mark: the test needs `what` (`found`: truthy when it is there)."""
    return pytest.mark.requires(what=what, found=bool(found), install=install)


def require(what: str, found: object, install: str) -> bool:
    """True when `what` is there. When it is not: with CI set, fail the test now; locally,
    note it for the run's summary and return False (the caller skips or falls back)."""
    if found:
        return True
    message = f"{what} is missing ({install})"
    if in_ci():
        pytest.fail(f"{message}; a CI run (CI={os.environ['CI']}) needs it", pytrace=False)
    if (what, install) not in MISSING:
        MISSING.append((what, install))
    return False


def apply_requires_marks(item: pytest.Item) -> None:
    """Before a test runs (tests/conftest.py's pytest_runtest_setup): its `requires` marks."""
    for mark in item.iter_markers("requires"):
        what, install = mark.kwargs["what"], mark.kwargs["install"]
        if not require(what, mark.kwargs["found"], install):
            pytest.skip(f"{what} is missing ({install})")


def summary_lines() -> list[str]:
    return [f"missing, so skipped: {what} ({install})" for what, install in MISSING]
