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

import pytest
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


@pytest.mark.parametrize("sessions", [3, 6])
def test_sessions_on_a_cold_server_all_get_their_takes_and_see_their_place(
    sessions: int, tiny_model: Path, tmp_path: Path
) -> None:
    with (
        streamlit_server(ROOT / "app.py", page_env(tiny_model, tmp_path)) as url,
        browser_sessions(ARTIFACTS, sessions, name=f"load-cold-{sessions}") as pages,
    ):
        for page in pages:  # all at once: none waits for another's first run
            page.goto(url, wait_until="commit")
        for page in pages:
            wait_for_script(page, timeout_ms=120_000)
            page.get_by_text("Seed: piano roll and audio").wait_for()
            assert page_problems(page) == []
        for page in pages:
            # 8 bars: each job outlasts a few polls of the page, so the sessions behind it see
            # their place (with 2 bars the faster decoder finished jobs between two polls)
            set_bars(page, 8, 1)
        for page in pages:
            page.get_by_role("button", name="Generate").click()
        places_seen: list[set[int]] = [set() for _ in pages]
        finished: list[int] = []
        deadline = time.monotonic() + TAKES_TIMEOUT_S
        while len(finished) < len(pages):
            assert time.monotonic() < deadline, f"takes drawn for sessions {finished}"
            for index, page in enumerate(pages):
                if index in finished:
                    continue
                text = page.locator("body").inner_text()
                places = re.findall(r"(\d)(?:st|nd|rd|th) in line, about \d+ s", text)
                places_seen[index].update(int(p) for p in places)
                assert page_problems(page) == [], index
                if takes_drawn(page, variants=1):
                    finished.append(index)
            time.sleep(0.1)
        # One generation at a time, first come first served: every session but the one whose
        # job ran first waited, and was told its place while it did. (Which job ran first is
        # the server's to know: the order in which this loop sees takes drawn is not it, as a
        # page may show its takes a poll later than the next one.)
        unseen = [index + 1 for index, seen in enumerate(places_seen) if not seen]
        assert len(unseen) <= 1, f"sessions {unseen} never saw their place in line"
        assert max(max(p, default=0) for p in places_seen) >= 2


def test_the_line_moves_when_a_tab_closes_and_stop_frees_the_slot(
    tiny_model: Path, tmp_path: Path
) -> None:
    # The shipped model: the tiny one draws 64 bars × 4 variants faster than this test can
    # line two sessions up behind it, and the first job must hold the slot until Stop.
    env = {**page_env(tiny_model, tmp_path), "MUSIC_LM_MODEL": "default"}
    with (
        streamlit_server(ROOT / "app.py", env) as url,
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
