"""The page under several users at once, in real browsers: a freshly started `streamlit run`
(the tiny model), sessions that open it together and press Generate together. Each gets its
takes, none sees a traceback, and the ones waiting see their place in line.

Playwright drives Debian's Chromium, as in test_page_browser.py; screenshots and console logs
go to build/test-artifacts/ (or $MUSIC_LM_ARTIFACTS).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from browser import (
    browser_sessions,
    chromium_path,
    page_problems,
    streamlit_server,
    takes_drawn,
    wait_for_script,
)
from external import requires

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("MUSIC_LM_ARTIFACTS", ROOT / "build" / "test-artifacts"))
TAKES_TIMEOUT_S = 120

pytestmark = requires("Chromium and Playwright", chromium_path(), "make setup installs both")


def page_env(tiny_model: Path, tmp_path: Path) -> dict[str, str]:
    return {"MUSIC_LM_MODEL": str(tiny_model), "MUSIC_LM_RUNS": str(tmp_path / "no-runs")}


def set_bars(page, bars: int, variants: int) -> None:
    page.get_by_label("Bars to generate").fill(str(bars))
    page.get_by_label("Variants").fill(str(variants))


def test_three_sessions_on_a_cold_server_all_get_their_takes(
    tiny_model: Path, tmp_path: Path
) -> None:
    with (
        streamlit_server(ROOT / "app.py", page_env(tiny_model, tmp_path)) as url,
        browser_sessions(ARTIFACTS, 3, name="load-cold") as pages,
    ):
        for page in pages:  # all at once: none waits for another's first run
            page.goto(url, wait_until="commit")
        for page in pages:
            wait_for_script(page, timeout_ms=90_000)
            page.get_by_text("Seed: piano roll and audio").wait_for()
            assert page_problems(page) == []
        for page in pages:
            set_bars(page, 2, 1)
        for page in pages:
            page.get_by_role("button", name="Generate").click()
        lines_seen: set[str] = set()
        deadline = time.monotonic() + TAKES_TIMEOUT_S
        done = [False] * len(pages)
        while not all(done):
            assert time.monotonic() < deadline, f"takes drawn: {done}"
            for index, page in enumerate(pages):
                if not done[index]:
                    done[index] = takes_drawn(page, variants=1)
                    text = page.locator("body").inner_text()
                    lines_seen.update(re.findall(r"(\d)(?:st|nd|rd|th) in line", text))
                    assert page_problems(page) == [], index
            time.sleep(0.2)
        # Three pressed Generate together: one ran, and someone waited in line meanwhile.
        assert "1" in lines_seen


def test_the_line_moves_when_a_tab_closes_and_stop_frees_the_slot(
    tiny_model: Path, tmp_path: Path
) -> None:
    with (
        streamlit_server(ROOT / "app.py", page_env(tiny_model, tmp_path)) as url,
        browser_sessions(ARTIFACTS, 3, name="load-line") as pages,
    ):
        first, leaver, last = pages
        for page in pages:
            page.goto(url)
            wait_for_script(page, timeout_ms=90_000)
            page.get_by_text("Seed: piano roll and audio").wait_for()
        set_bars(first, 64, 4)  # long enough to hold the slot until Stop
        first.get_by_role("button", name="Generate").click()
        first.get_by_text(re.compile(r"generating: \d+ of 64 bars")).wait_for(timeout=30_000)
        for page in (leaver, last):
            set_bars(page, 1, 1)
            page.get_by_role("button", name="Generate").click()
        leaver.get_by_text(re.compile("1st in line")).wait_for(timeout=15_000)
        last.get_by_text(re.compile("2nd in line")).wait_for(timeout=15_000)

        leaver.context.close()  # the tab goes: its place goes after the grace period
        last.get_by_text(re.compile("1st in line")).wait_for(timeout=20_000)

        first.get_by_role("button", name="Stop").click()
        first.get_by_text(re.compile("stopped after")).wait_for(timeout=20_000)
        deadline = time.monotonic() + TAKES_TIMEOUT_S
        while not takes_drawn(last, variants=1):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert page_problems(first) == []
        assert page_problems(last) == []
