"""Every control of the page's options form, end to end through Streamlit's AppTest.

As tests/test_options.py does for the command line: each row sets one control on the page,
presses Generate, and reads the take's MIDI with mido through tests/midi_checker.py (its
own tables). The checks are the command line's, which tests/test_options.py shows to fail on
a run without their option; here each row's check must also fail on the page's take made
with the form as it opens (the "default take"), so a control the page does not pass on
fails its row. A test lists the form's controls and fails when one has no row.

The seed is the folk tune cut to its pickup bar (one violin, 6/8, B minor), the random seed
fixed, one variant of one bar unless a row says otherwise.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("torch")
from midi_checker import (
    GROUPS,
    NoteRow,
    continuation_beat,
    melodic_notes,
    midi_facts,
    new_notes,
    text_event,
)
from streamlit.testing.v1 import AppTest
from test_app import APP, button, finish, takes, widget
from test_options import (
    BEATS_PER_BAR,
    EXAMPLES,
    SEED_FILES,
    _family_ids,
    _low_pitch_ids,
    changes_after_marker,
    exactly_bars,
    held_by_the_pedal,
    model_hash,
    one_note_at_a_time,
    pitch_classes_only,
    pitches_in,
    pitches_within,
    pushing,
    ranked,
    released_as_written,
    somewhere_outside_instrument_ranges,
    within_instrument_ranges,
)

FOLK, BAND = "folk_tune.mid", "band_with_drums.mid"
PEDALLED_NAME, PEDALLED_BYTES = SEED_FILES["@pedalled"]  # among the page's examples here
SUSTAIN = "Apply the sustain pedal"  # read with the seed, before the options form
SEED_CONTROLS = (SUSTAIN,)
SEED_NUMBER = 1


def _silence() -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44100)
        out.writeframes(b"\0" * 4 * 441)
    return buffer.getvalue()


SILENCE = _silence()  # 10 ms


@dataclass
class PageTake:
    """A take of the page, read as tests/test_options.py reads a command's output."""

    take: object  # music_lm.page.takes.Take
    page: AppTest

    def facts(self) -> dict:
        return midi_facts(self.take.files[".mid"])

    def start_beat(self) -> float:
        return continuation_beat(self.facts())

    def new_notes(self) -> list[NoteRow]:
        return new_notes(self.facts())

    def melodic(self) -> list[NoteRow]:
        return melodic_notes(self.facts())

    def text_event(self) -> str:
        return text_event(self.take.files[".mid"])


# ---- driving the page ----


def open_page(tiny_model: Path, other: Path, root: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv("MUSIC_LM_MODEL", str(tiny_model))
    monkeypatch.setenv("MUSIC_LM_RUNS", str(root / "runs"))
    monkeypatch.setenv("MUSIC_LM_PAGE_DEBUG", "1")  # an unexpected error fails the test
    examples = root / "examples"  # midi_in's, and a pedalled piano
    shutil.copytree(EXAMPLES, examples, ignore=shutil.ignore_patterns("*.py", "*.md"))
    (examples / PEDALLED_NAME).write_bytes(PEDALLED_BYTES())
    monkeypatch.setenv("MUSIC_LM_EXAMPLES", str(examples))
    shutil.copytree(other, root / "runs" / "other")  # a second model, other weights
    page = AppTest.from_file(APP, default_timeout=120)
    page.run()
    assert not page.exception
    return page


def choose_seed(page: AppTest, example: str) -> None:
    widget(page.selectbox, "Example seed").select(example).run()
    widget(page.number_input, "Seed bars to keep").set_value(1).run()


def reset_form(page: AppTest) -> None:
    """Every control of the form as it opens, but one variant of one bar from a fixed random
    seed (the form keeps what the last row set); the seed read with the pedal, as it opens."""
    widget(page.checkbox, SUSTAIN).check()
    widget(page.multiselect, "Models").set_value([model_labels(page)[0]])
    widget(page.selectbox, "Mix").select("weights")
    widget(page.text_input, "Mix weights").input("")
    widget(page.selectbox, "Style").select("(the seed's)")
    widget(page.number_input, "Bars to generate").set_value(1)
    widget(page.number_input, "Variants").set_value(1)
    widget(page.slider, "Temperature (first → last new bar)").set_value((1.0, 1.0))
    widget(page.number_input, "Top-k (0: off)").set_value(0)
    widget(page.slider, "Top-p").set_value(0.95)
    widget(page.slider, "Min-p").set_value(0.0)
    widget(page.checkbox, "Random seed").uncheck()
    widget(page.number_input, "Seed number").set_value(SEED_NUMBER)
    widget(page.selectbox, "Keep to a key").select("off")
    widget(page.selectbox, "Scale").select("(the key's)")
    widget(page.multiselect, "Instruments that may play").set_value([])
    widget(page.number_input, "Most notes at once (0: any)").set_value(0)
    widget(page.text_input, "Pitch range").input("")
    widget(page.checkbox, "Playable ranges").check()
    widget(page.checkbox, "Keep attention").uncheck()
    widget(page.multiselect, "Locked").set_value(["tempo", "meter", "key"])
    widget(page.checkbox, "Adapt to the seed").uncheck()
    widget(page.number_input, "Adaptation steps").set_value(20)
    widget(page.checkbox, "Allow unisons").uncheck()
    widget(page.selectbox, "Drum keys").select("gm")
    widget(page.text_input, "Drum length").input("auto")
    widget(page.checkbox, "Ring past the end").uncheck()
    widget(page.number_input, "Loop guard (0: off)").set_value(32)
    widget(page.text_input, "Chords").input("")
    widget(page.checkbox, "Chord tones only").uncheck()


def make_take(page: AppTest, set_controls: Callable[[AppTest], None], will=None) -> list:
    """Set the controls, press Generate (under the model's leaning `will`), the takes made."""
    before = len(page.session_state["history"].takes)
    reset_form(page)
    set_controls(page)
    with will() if will is not None else contextlib.nullcontext():
        button(page, "Generate").click().run()
        assert not page.exception
        assert not page.error, [e.value for e in page.error]
        finish(page)
    made = [t for t in takes(page) if t.number > before]
    assert made, "no take"
    return made


def model_labels(page: AppTest) -> tuple[str, str]:
    options = widget(page.multiselect, "Models").options
    shipped = options[0]
    other = next(o for o in options if o.endswith("runs/other"))
    return shipped, other


# ---- the rows: which controls each sets, and the check of the take ----


def set_(kind: str, label: str, value) -> Callable[[AppTest], None]:
    def setter(page: AppTest) -> None:
        element = widget(getattr(page, kind), label)
        if kind == "selectbox":
            element.select(value)
        elif kind == "text_input":
            element.input(value)
        elif kind == "checkbox":
            element.check() if value else element.uncheck()
        else:
            element.set_value(value)

    return setter


def both(*setters: Callable[[AppTest], None]) -> Callable[[AppTest], None]:
    def setter(page: AppTest) -> None:
        for one in setters:
            one(page)

    return setter


def two_models(page: AppTest) -> None:
    widget(page.multiselect, "Models").set_value(list(model_labels(page)))


def greedy(page: AppTest, take: PageTake, case: PageCase) -> None:
    """Three other seed numbers give the same notes: sampling had one choice. (With one,
    a bar of few choices can come out the same by chance, and the control passes.)"""
    for seed in (2, 3, 4):
        again = make_take(page, both(case.set, set_("number_input", "Seed number", seed)),
                          case.will)  # fmt: skip
        assert take.new_notes() == PageTake(again[0], page).new_notes(), seed


def as_model_b_alone(page: AppTest, take: PageTake, case: PageCase) -> None:
    other = model_labels(page)[1]
    alone = make_take(page, set_("multiselect", "Models", [other]))
    assert take.new_notes() == PageTake(alone[0], page).new_notes()


def by_both_models(page: AppTest, take: PageTake, case: PageCase) -> None:
    hashes = [model_hash(Path(m["path"])) for m in take.take.record["models"]]
    assert f"model {'+'.join(hashes)}," in take.text_event()
    assert len(set(hashes)) == 2


def first_bar_from_the_first_model(page: AppTest, take: PageTake, case: PageCase) -> None:
    start = take.start_beat()
    # the first model alone (make_take resets the form: one model)
    alone = PageTake(make_take(page, set_("number_input", "Bars to generate", 2))[0], page)

    def first_bar(t: PageTake) -> list:
        return [n for n in t.new_notes() if n[2] < start + BEATS_PER_BAR]

    assert first_bar(take) == first_bar(alone)
    assert take.new_notes() != alone.new_notes()


def plain(check: Callable) -> Callable:
    """A check of the command line's, on a page take."""
    return lambda _page, take, _case: check(take)


def style_bach(page: AppTest, take: PageTake, case: PageCase) -> None:
    assert take.take.text.split()[:2] == ["piece", "style:bach"]


def two_different_takes(page: AppTest, take: PageTake, case: PageCase) -> None:
    made = [t for t in takes(page) if t.run == take.take.run]
    assert len(made) == 2
    assert PageTake(made[0], page).new_notes() != PageTake(made[1], page).new_notes()


def seed_number_5(page: AppTest, take: PageTake, case: PageCase) -> None:
    assert ", random seed 5," in take.text_event()


def only_the_bass_may_play(page: AppTest) -> None:
    choice = widget(page.multiselect, "Instruments that may play")
    basses = [o for o in choice.options if "bass" in o]
    assert len(basses) == 1, choice.options
    choice.set_value(basses)


def bass_only(page: AppTest, take: PageTake, case: PageCase) -> None:
    notes = take.new_notes()
    assert notes, "no new notes"
    assert all(n[1] in GROUPS["bass"] for n in notes), notes[:3]


def attention_kept(page: AppTest, take: PageTake, case: PageCase) -> None:
    # (attention changes no note: the check is the take's attention, which the page's
    # Attention view draws)
    assert take.take.attention is not None


def recorded(*path: str, value) -> Callable[[AppTest, PageTake, PageCase], None]:
    """The take's settings record holds `value` at `path` (what generate() was given)."""

    def check(page: AppTest, take: PageTake, case: PageCase) -> None:
        found = take.take.record
        for key in path:
            found = found[key]
        assert found == value

    return check


def adapted_in_2_steps(page: AppTest, take: PageTake, case: PageCase) -> None:
    adaptation = take.take.record["adaptation"]
    assert [(a["steps"], a["method"]) for a in adaptation or []] == [(2, "full")]


def chords_on_the_beat(page: AppTest, take: PageTake, case: PageCase) -> None:
    """The chart locks the take, passing notes free (the check of the strict row, on the
    notes, is the one the CLI's rows make; this one reads what generate() was given)."""
    lock = take.take.record["constraints"].get("chords")
    assert lock is not None, "no chord lock"
    assert lock["strict"] is False


@dataclass(frozen=True)
class PageCase:
    id: str
    covers: tuple[str, ...]  # labels of the form's controls
    set: Callable[[AppTest], None]
    check: Callable[[AppTest, PageTake, PageCase], None]
    will: Callable | None = None
    seed: str = FOLK
    discriminates: bool = True  # the check fails on the default take (same will and seed)
    # the take the check must fail on, when not the default one: the form set by this
    control: Callable[[AppTest], None] | None = None


TWO_BARS = set_("number_input", "Bars to generate", 2)
FOUR_BARS = set_("number_input", "Bars to generate", 4)


def _tempo_will():
    return pushing(lambda: _family_ids("tempo"))


def _meter_will():
    return pushing(lambda: _family_ids("ts"))


def _key_will():
    return pushing(lambda: _family_ids("key"))


def _low_will():
    return pushing(_low_pitch_ids)


PAGE_CASES = (
    PageCase("models", ("Models",), two_models, by_both_models),
    PageCase("mix weights", ("Mix weights",),
             both(two_models, set_("text_input", "Mix weights", "0,1")), as_model_b_alone),
    PageCase("mix schedule", ("Mix",),
             both(two_models, set_("selectbox", "Mix", "schedule"),
                  set_("number_input", "Bars to generate", 2)),
             first_bar_from_the_first_model),
    PageCase("style", ("Style",), set_("selectbox", "Style", "bach"), style_bach),
    PageCase("bars", ("Bars to generate",), set_("number_input", "Bars to generate", 2),
             plain(exactly_bars(2))),
    PageCase("variants", ("Variants",), set_("number_input", "Variants", 2), two_different_takes),
    # Four bars, option and control alike: one bar of the ranked model can hold a single
    # note, too few choices for a draw to part from the greedy one.
    PageCase("temperature", ("Temperature (first → last new bar)",),
             both(FOUR_BARS, set_("slider", "Temperature (first → last new bar)", (0.1, 0.1))),
             greedy, will=ranked, control=FOUR_BARS),
    PageCase("top-k", ("Top-k (0: off)",),
             both(FOUR_BARS, set_("number_input", "Top-k (0: off)", 1)), greedy, will=ranked,
             control=FOUR_BARS),
    PageCase("top-p", ("Top-p",), both(FOUR_BARS, set_("slider", "Top-p", 0.05)), greedy,
             will=ranked, control=FOUR_BARS),
    PageCase("min-p", ("Min-p",), both(FOUR_BARS, set_("slider", "Min-p", 0.5)), greedy,
             will=ranked, control=FOUR_BARS),
    PageCase("seed number", ("Random seed", "Seed number"),
             set_("number_input", "Seed number", 5), seed_number_5),
    # (two bars: a tiny model's one new bar can hold too few notes to judge a scale by)
    PageCase("key", ("Keep to a key",),
             both(set_("selectbox", "Keep to a key", "F:minor"), TWO_BARS),
             plain(pitches_in(5, "minor")), control=TWO_BARS),
    PageCase("scale", ("Scale",), both(set_("selectbox", "Scale", "dorian"), TWO_BARS),
             plain(pitches_in(11, "dorian")), control=TWO_BARS),
    PageCase("instruments", ("Instruments that may play",),
             only_the_bass_may_play, bass_only,
             seed=BAND),
    PageCase("polyphony", ("Most notes at once (0: any)",),
             set_("number_input", "Most notes at once (0: any)", 1), plain(one_note_at_a_time)),
    PageCase("range", ("Pitch range",), set_("text_input", "Pitch range", "C4-C5"),
             plain(pitches_within(60, 72))),
    # two bars: one bar of the tiny model can hold too few notes to judge
    PageCase("no playable ranges", ("Playable ranges",),
             both(set_("checkbox", "Playable ranges", False), TWO_BARS),
             plain(somewhere_outside_instrument_ranges), will=_low_will),
    PageCase("playable ranges", ("Playable ranges",),
             both(set_("checkbox", "Playable ranges", True), TWO_BARS),
             plain(within_instrument_ranges), will=_low_will, discriminates=False),
    PageCase("attention", ("Keep attention",), set_("checkbox", "Keep attention", True),
             attention_kept),
    PageCase("free tempo", ("Locked",), set_("multiselect", "Locked", ["meter", "key"]),
             plain(changes_after_marker("tempos", True)), will=_tempo_will),
    PageCase("free meter", ("Locked",), set_("multiselect", "Locked", ["tempo", "key"]),
             plain(changes_after_marker("meters", True)), will=_meter_will),
    PageCase("free key", ("Locked",), set_("multiselect", "Locked", ["tempo", "meter"]),
             plain(changes_after_marker("keys", True)), will=_key_will),
    PageCase("locked", ("Locked",), set_("multiselect", "Locked", ["tempo", "meter", "key"]),
             plain(changes_after_marker("tempos", False)), will=_tempo_will,
             discriminates=False),
    PageCase("adapt", ("Adapt to the seed", "Adaptation steps"),
             both(set_("checkbox", "Adapt to the seed", True),
                  set_("number_input", "Adaptation steps", 2)), adapted_in_2_steps),
    PageCase("unisons", ("Allow unisons",), set_("checkbox", "Allow unisons", True),
             recorded("constraints", "unisons", value=True)),
    PageCase("drum keys", ("Drum keys",), set_("selectbox", "Drum keys", "seed"),
             recorded("constraints", "drum_keys", value="seed")),
    PageCase("drum length", ("Drum length",), set_("text_input", "Drum length", "1/4"),
             recorded("constraints", "drum_steps", value=6)),
    PageCase("ring past the end", ("Ring past the end",),
             set_("checkbox", "Ring past the end", True),
             recorded("constraints", "hold_past_end", value=True)),
    PageCase("sustain", (SUSTAIN,), set_("checkbox", SUSTAIN, True), plain(held_by_the_pedal),
             seed=PEDALLED_NAME, control=set_("checkbox", SUSTAIN, False)),
    PageCase("no sustain", (SUSTAIN,), set_("checkbox", SUSTAIN, False),
             plain(released_as_written), seed=PEDALLED_NAME),
    # (the folk tune is in B minor: its default take leaves a C major triad)
    PageCase("chords", ("Chords", "Chord tones only"),
             both(set_("text_input", "Chords", "C"), set_("checkbox", "Chord tones only", True)),
             plain(pitch_classes_only({0, 4, 7}))),
    PageCase("chords on the beat", ("Chords",), set_("text_input", "Chords", "C"),
             chords_on_the_beat),
    PageCase("loop guard", ("Loop guard (0: off)",),
             set_("number_input", "Loop guard (0: off)", 0),
             recorded("constraints", "loop_guard", value=None)),
)  # fmt: skip


@dataclass
class Page:
    app: AppTest
    seed: str | None = None
    defaults: dict | None = None  # (seed, will) -> the take of the form as it opens


@pytest.fixture(scope="module")
def shared(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """One page for every row (opening one costs seconds); each row resets the form."""
    from test_options import other_tiny_model_folder

    root = tmp_path_factory.mktemp("page-options")
    with pytest.MonkeyPatch.context() as monkeypatch:
        # No audio for the takes: an untrained model holds notes for hundreds of quarter
        # notes, minutes of audio per take, which these rows never listen to.
        monkeypatch.setattr("music_lm.page.takes.render_wav", lambda _midi, _name: SILENCE)
        other = other_tiny_model_folder(root / "other")
        yield Page(open_page(tiny_model, other, root, monkeypatch), defaults={})


def default_take(shared: Page, case: PageCase) -> PageTake:
    key = (case.seed, case.will)
    if key not in shared.defaults:
        shared.defaults[key] = make_take(shared.app, lambda _page: None, case.will)[0]
    return PageTake(shared.defaults[key], shared.app)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in PAGE_CASES])
def test_the_page_applies_the_control(shared: Page, case: PageCase) -> None:
    page = shared.app
    if shared.seed != case.seed:
        choose_seed(page, case.seed)
        shared.seed = case.seed
    take = PageTake(make_take(page, case.set, case.will)[0], page)
    case.check(page, take, case)
    if case.discriminates:  # the check fails on the take of the form as it opens
        if case.control is None:
            control = default_take(shared, case)
        else:
            control = PageTake(make_take(page, case.control, case.will)[0], page)
        with pytest.raises(AssertionError):
            case.check(page, control, case)


def form_controls(page: AppTest) -> set[str]:
    """The labels of the widgets in the options form (the Generate button aside)."""
    labels = set()
    for kind in ("multiselect", "selectbox", "text_input", "number_input", "slider",
                 "checkbox"):  # fmt: skip
        for element in getattr(page, kind):
            if element.proto.form_id == "options":
                labels.add(element.label)
    return labels


def test_every_control_of_the_form_has_a_row(shared: Page) -> None:
    """The form's controls, and those that read the seed (the pedal)."""
    covered = {label for case in PAGE_CASES for label in case.covers}
    controls = form_controls(shared.app)
    assert len(controls) >= 15  # the form was found
    controls |= {c.label for c in shared.app.checkbox if c.label in SEED_CONTROLS}
    assert controls - covered == set(), "controls without a row"
    assert covered - controls == set(), "rows for no control"
