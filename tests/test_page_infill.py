"""The page's Redraw panel (`music_lm.infill` on a take), driven through Streamlit's AppTest
with the tiny untrained model of tests/test_app.py; and the helpers of music_lm/page/redraw.py
that turn the panel's choices into infill's words."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("torch")
from streamlit.testing.v1 import AppTest
from test_app import button, finish, generate, messages, takes, widget
from test_app import page as page  # the fixture: a fresh page with the tiny model

from music_lm.page.redraw import bars_words, track_choices, tracks_words

BAND = "band_with_drums.mid"  # flute, electric-bass-finger, acoustic-grand-piano, drums
BASS = "2 electric-bass-finger"


def band_take(page: AppTest):
    """One take of the band example: its first bar and one new bar (two bars in all)."""
    widget(page.selectbox, "Example seed").select(BAND).run()
    widget(page.number_input, "Seed bars to keep").set_value(1).run()
    generate(page)
    (take,) = takes(page)
    return take


def redraw(page: AppTest, tracks: list[str], bars: tuple[int, int], chords: str = "") -> None:
    widget(page.slider, "Bars to redraw").set_value(bars)
    widget(page.multiselect, "Tracks to redraw").set_value(tracks)
    widget(page.text_input, "Chords over the redrawn bars").input(chords)
    button(page, "Redraw").click().run()
    assert not page.exception


def notes_of(take, track: int) -> list:
    return list(take.score.tracks[track].notes)  # (onset, duration, pitch, velocity)


def test_a_redrawn_track_keeps_the_other_tracks_note_for_note(page: AppTest) -> None:
    before = band_take(page)
    assert widget(page.slider, "Bars to redraw").max == 2
    redraw(page, [BASS], (2, 2))
    assert not page.error, messages(page.error)
    finish(page)
    (after,) = takes(page)  # the redraw's take is shown in place of the one it redrew
    assert after.number == before.number + 1
    assert after.parent == before.number
    assert after.record["region"]["bars"] == [2, 2]
    assert [t["track"] for t in after.record["tracks"]] == [2]
    for kept in (0, 2, 3):  # flute, piano, drums
        assert notes_of(after, kept) == notes_of(before, kept)
    # the bass of bar 1 (before the region) is kept too
    start = round(after.record["region"]["start_beat"] * after.score.ticks_per_beat)
    assert [n for n in notes_of(after, 1) if n[0] < start] == [
        n for n in notes_of(before, 1) if n[0] < start
    ]
    summary = "tracks 2 (electric-bass-finger) redrawn over bar 2"
    assert any(m.startswith(summary) for m in messages(page.caption)), messages(page.caption)
    # the roll marks the region
    roll = [c for c in page.get("plotly_chart") if "redrawn" in c.proto.spec]
    assert roll, "no roll marks the redrawn bars"


def test_a_redraw_goes_through_the_job_line_with_progress_and_stop(page: AppTest) -> None:
    widget(page.selectbox, "Example seed").select(BAND).run()
    widget(page.number_input, "Seed bars to keep").set_value(16).run()
    generate(page)
    (before,) = takes(page)
    widget(page.number_input, "Takes to draw").set_value(4)
    everything = [c for c in widget(page.multiselect, "Tracks to redraw").options
                  if not c.startswith("add ")]  # fmt: skip
    redraw(page, everything, (1, 17))
    assert "job" in page.session_state
    assert page.get("progress"), "no progress bar while redrawing"
    button(page, "Redraw").click().run()  # a second one waits for the first
    assert any("A generation is running" in w for w in messages(page.warning))
    button(page, "Stop").click().run()
    finish(page)
    assert takes(page) == [before]
    warnings = messages(page.warning)
    assert any(w.startswith("stopped after") for w in warnings), warnings


def test_an_instrument_can_be_added_as_a_new_track(page: AppTest) -> None:
    before = band_take(page)
    redraw(page, ["add cello"], (1, 2))
    assert not page.error, messages(page.error)
    finish(page)
    (after,) = takes(page)
    assert [t.instrument_name for t in after.score.tracks][:4] == [
        t.instrument_name for t in before.score.tracks
    ]
    assert after.record["tracks"] == [{"track": 5, "instrument": "cello", "new": True}]
    assert after.score.tracks[4].notes, "the new track plays"


def test_a_bad_chord_is_one_line_and_starts_nothing(page: AppTest) -> None:
    band_take(page)
    redraw(page, [BASS], (1, 2), chords="C Hm")
    (error,) = messages(page.error)
    assert error.startswith("not a chord: 'Hm' (expected a root A-G")
    assert "\n" not in error
    assert "job" not in page.session_state


def test_redraw_needs_a_track(page: AppTest) -> None:
    band_take(page)
    redraw(page, [], (1, 2))
    assert messages(page.error) == ["Choose a track to redraw, or an instrument to add."]
    assert "job" not in page.session_state


# ---- the panel's words ----


class _Take:
    """A take as the helpers read it: its ids."""

    def __init__(self, text: str) -> None:
        from music_lm.tokens.validate import words_to_ids

        self.ids = tuple(words_to_ids(text.split()))


def test_the_track_choices_are_the_takes_tracks_then_instruments_to_add() -> None:
    take = _Take("piece style:none tempo:120 ts:4/4 inst:violin inst:drums bar end")
    choices = track_choices(take)
    assert choices[:2] == ["1 violin", "2 drums"]
    assert "add flute" in choices
    assert "add violin" not in choices
    assert "add drums" not in choices


def test_the_choices_become_infills_words() -> None:
    assert tracks_words(["2 electric-bass-finger", "add flute"]) == ["2", "flute"]
    assert bars_words(3, 4) == "3-4"


def test_the_redraw_chords_are_the_clis_chord_lock() -> None:
    from music_lm.page.options import redraw_constraints

    lock = redraw_constraints(2, "C|G Am", strict=True).to_json()["chords"]
    assert lock["strict"] is True
    # a ticked box with no chart holds nothing (the CLI refuses --chord-strict alone)
    assert redraw_constraints(2, " ", strict=True).chords is None


def test_an_edit_of_a_redrawn_take_marks_no_region() -> None:
    from music_lm.page.redraw import redraw_summary, region_beats
    from music_lm.page.takes import Take, edited_take

    text = ("piece style:none tempo:120 ts:4/4 inst:violin bar @0 t1 d:1 v:80 C4 "
            "bar @0 t1 d:1 v:80 E4 end")  # fmt: skip
    region = {"bars": [2, 2], "start_beat": 4.0, "end_beat": 8.0}
    record = {"region": region, "tracks": [{"track": 1, "instrument": "violin", "new": False}],
              "mode": "tracks"}  # fmt: skip
    redrawn = Take(1, 1, 1, _Take(text).ids, 0, 0, 1, record, {".txt": text.encode()})
    assert region_beats(redrawn) == (4.0, 8.0)
    assert redraw_summary(redrawn) == "tracks 1 (violin) redrawn over bar 2"
    for both_sides, words in ((True, "both sides"), (False, "what came before")):
        bars = Take(1, 1, 1, _Take(text).ids, 0, 0, 1,
                    {**record, "mode": "bars", "both_sides": both_sides}, {})  # fmt: skip
        assert redraw_summary(bars) == f"every track (from {words}) redrawn over bar 2"
    edit = edited_take(redrawn, text.replace("E4", "G4"), number=2)
    assert region_beats(edit) is None
    assert redraw_summary(edit) is None
