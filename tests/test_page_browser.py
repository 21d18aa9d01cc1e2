"""The page end to end in a real browser: `streamlit run app.py` on localhost with the shipped
model, driven by Playwright through Debian's Chromium (headless, offline: any request off this
machine is refused and fails the test).

The screenshots are kept in build/test-artifacts/ (or $MUSIC_LM_ARTIFACTS) to be looked at.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import mido
from browser import browser_page, chromium_path, streamlit_server, wait_for_script
from external import requires

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("MUSIC_LM_ARTIFACTS", ROOT / "build" / "test-artifacts"))
SEED = "folk_tune.mid"

pytestmark = requires("Chromium and Playwright", chromium_path(), "make setup installs both")


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox by its label."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_function(
        f"document.querySelector('input[aria-label=\"{label}\"]').value === '{option}'"
    )


def test_two_variants_play_download_and_show_their_text(tmp_path: Path) -> None:
    env = {"MUSIC_LM_RUNS": str(tmp_path / "no-runs"), "MUSIC_LM_MODEL": "default"}
    blocked: list[str] = []
    for old in ("page.png", "page-results.png"):  # a screenshot of an earlier run proves nothing
        (ARTIFACTS / old).unlink(missing_ok=True)
    with (
        streamlit_server(ROOT / "app.py", env) as url,
        browser_page(ARTIFACTS, name="page", viewport=(1600, 1000), blocked=blocked) as page,
    ):
        page.goto(url)
        wait_for_script(page)
        choose(page, "Example seed", SEED)
        page.get_by_text("Seed: piano roll and audio").wait_for()
        page.get_by_label("Variants").fill("2")
        page.get_by_label("Bars to generate").fill("2")
        page.get_by_role("button", name="Generate").click()

        # The seed's audio, then one per take when both variants are done.
        page.wait_for_function("document.querySelectorAll('audio').length >= 3", timeout=180_000)
        results = page.get_by_test_id("stTabs")
        results.get_by_role("heading", name="Take 2 (run 1, variant 2").wait_for()
        assert results.get_by_role("heading", name="Take 1 (run 1, variant 1").is_visible()

        # The first take's audio plays: its time advances.
        audio = page.locator("audio").nth(1)
        audio.evaluate("a => { a.muted = true; return a.play(); }")
        page.wait_for_function(
            "document.querySelectorAll('audio')[1].currentTime > 0.5", timeout=15_000
        )
        assert audio.evaluate("a => a.duration") > 1

        # One player per take: the WAV. The in-browser MIDI player only stands in without one.
        assert page.locator('iframe[data-testid="stIFrame"]').count() == 0

        # The MIDI download is a MIDI file with notes and the continuation marker.
        with page.expect_download() as download:
            page.get_by_role("button", name="MIDI", exact=True).first.click()
        midi = mido.MidiFile(file=io.BytesIO(Path(download.value.path()).read_bytes()))
        notes = [m for m in midi if m.type == "note_on" and m.velocity > 0]
        markers = [m.text for m in midi if m.type == "marker"]
        assert notes
        assert "music_lm continuation" in markers
        assert download.value.suggested_filename == "take-1.mid"
        page.screenshot(path=str(ARTIFACTS / "page-results.png"), full_page=True)

        # The token view shows the take's text.
        page.get_by_role("tab", name="Token text").click()
        area = page.get_by_role("textbox", name="Token text of the take")
        area.wait_for()
        text = area.input_value()
        assert text.startswith("piece style:")
        assert text.rstrip().endswith("end")
    assert blocked == []
    assert (ARTIFACTS / "page.png").stat().st_size > 10_000
