"""The page, driven through Streamlit's AppTest (no browser): every control path, with a tiny
untrained model patched in through MUSIC_LM_MODEL (the grammar's masks make its output valid).
The generation runs on the page's worker thread; a test waits for it, then runs the page
again, as the page's poll would."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import mido
import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("torch")
from midi_checker import check_constraints
from streamlit.testing.v1 import AppTest

from music_lm.generation.constraints import Constraints
from music_lm.generation.options import parse_range
from music_lm.page.limits import PageLimits

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
EXAMPLES = sorted(p.name for p in (ROOT / "midi_in").glob("*.mid"))


@pytest.fixture
def page(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    import os
    import random
    import types

    import streamlit as st

    # Each test starts with empty caches (a take, a WAV or a model another test left there
    # would hide what this one does), and with the random seeds the page draws (when "Random
    # seed" is on) drawn from a fixed sequence: the same takes on every run.
    st.cache_data.clear()
    st.cache_resource.clear()
    draws = random.Random(0)
    seeded_os = types.ModuleType("os")
    seeded_os.__dict__.update(vars(os))
    seeded_os.urandom = lambda size: draws.randbytes(size)
    monkeypatch.setattr("music_lm.generation.runner.os", seeded_os)
    monkeypatch.setenv("MUSIC_LM_MODEL", str(tiny_model))
    monkeypatch.setenv("MUSIC_LM_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MUSIC_LM_PAGE_DEBUG", "1")  # an unexpected error fails the test
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    assert not app.exception
    return app


def widget(elements, label: str):
    """The one widget of a kind with this label."""
    found = [w for w in elements if w.label == label]
    assert len(found) == 1, f"{label!r}: {[w.label for w in elements]}"
    return found[0]


def button(app: AppTest, label: str):
    return widget(app.button, label)


def generate(app: AppTest, wait: bool = True, **numbers) -> AppTest:
    """Set number inputs of the options form by label, press Generate, wait for the job."""
    defaults = {"Bars to generate": 1, "Variants": 1}
    for label, value in {**defaults, **numbers}.items():
        widget(app.number_input, label).set_value(value)
    button(app, "Generate").click().run()
    assert not app.exception
    assert not app.error, [e.value for e in app.error]
    if wait:
        finish(app)
    return app


def finish(app: AppTest) -> AppTest:
    job = app.session_state["job"]
    assert job.wait(120), "the generation did not end"
    app.run()
    assert not app.exception
    return app


def takes(app: AppTest) -> list:
    return app.session_state["history"].shown_takes


def messages(elements) -> list[str]:
    return [e.value for e in elements]


# ---- the seed ----


def test_an_example_seed_shows_its_summary_roll_and_audio(page: AppTest) -> None:
    assert widget(page.selectbox, "Example seed").value == EXAMPLES[0]
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["Bars"] == "4"  # the first four bars are kept by default
    assert {"Notes", "Tempo", "Meter", "Key", "Length"} <= set(metrics)
    (roll,) = page.get("plotly_chart")
    assert len(page.get("audio")) == 1
    # the roll draws the kept bars' notes: a bar per note, from its onset, in its row
    from music_lm.page.seeds import seed_from_midi

    example = ROOT / "midi_in" / EXAMPLES[0]
    score = seed_from_midi(example.read_bytes(), EXAMPLES[0]).cut(4).score
    traces = json.loads(roll.proto.spec)["data"]
    assert len(traces) == len([t for t in score.tracks if t.notes])
    for trace, track in zip(traces, [t for t in score.tracks if t.notes], strict=True):
        ppq = score.ticks_per_beat
        assert _plotly_array(trace["base"]).tolist() == [n.onset_tick / ppq for n in track.notes]
        assert _plotly_array(trace["x"]).tolist() == [n.duration_tick / ppq for n in track.notes]
        assert _plotly_array(trace["y"]).tolist() == [n.pitch for n in track.notes]


def test_every_example_can_be_chosen_and_cut(page: AppTest) -> None:
    for name in EXAMPLES:
        widget(page.selectbox, "Example seed").select(name).run()
        assert not page.exception, name
        assert not page.error, name
        bars = widget(page.number_input, "Seed bars to keep")
        bars.set_value(2).run()
        assert {m.label: m.value for m in page.metric}["Bars"] == "2", name


def test_an_uploaded_midi_is_the_seed(page: AppTest, make_midi, note) -> None:
    data = make_midi([*note(0, 480, 60), *note(480, 480, 64), *note(960, 960, 67)])
    widget(page.radio, "Seed").set_value("Upload").run()
    page.file_uploader[0].set_value(("mine.mid", data, "audio/midi")).run()
    assert not page.exception
    assert not page.error
    assert {m.label: m.value for m in page.metric}["Notes"] == "3"
    generate(page)
    assert len(takes(page)) == 1


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "mine.mid:"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x10\x00", "mine.mid:"),
        (bytes(range(256)) * 4, "mine.mid:"),
    ],
    ids=["empty", "truncated", "random bytes"],
)
def test_a_bad_upload_gets_one_line_naming_the_file(page: AppTest, data: bytes, expected: str):
    widget(page.radio, "Seed").set_value("Upload").run()
    page.file_uploader[0].set_value(("mine.mid", data, "audio/midi")).run()
    assert not page.exception
    errors = messages(page.error)
    assert len(errors) == 1
    assert errors[0].startswith(expected)
    assert "\n" not in errors[0]
    button(page, "Generate").click().run()  # nothing to generate from
    assert messages(page.error) == [errors[0], "Choose a seed first."]
    assert "job" not in page.session_state


def test_settings_alone_start_a_piece(page: AppTest) -> None:
    widget(page.radio, "Seed").set_value("Settings only").run()
    widget(page.selectbox, "Meter").select("3/4").run()
    widget(page.multiselect, "Instruments").set_value(["flute", "drums"]).run()
    assert not page.error
    generate(page, **{"Bars to generate": 2})
    take = takes(page)[0]
    assert take.text.startswith("piece style:none tempo:")
    assert "ts:3/4" in take.text.split("\n")[0]
    assert "inst:flute inst:drums" in take.text.split("\n")[0]
    assert take.text.count("bar") == 2


# ---- generating ----


def test_two_variants_side_by_side_with_audio_player_and_downloads(page: AppTest) -> None:
    generate(page, **{"Variants": 2, "Bars to generate": 2})
    made = takes(page)
    assert [t.number for t in made] == [1, 2]
    labels = [s.value for s in page.subheader]
    assert "Take 1 (run 1, variant 1, seed" in " ".join(labels)
    assert len(page.get("audio")) == 3  # the seed's and one per take
    assert all(t.wav[:4] == b"RIFF" for t in made)
    assert len(page.get("iframe")) == 0  # one player per take: the WAV, no MIDI player too
    downloads = [b.label for b in page.download_button]
    for label in ("MIDI", "DAW MIDI", "WAV", "Token text", "Settings JSON"):
        assert downloads.count(label) == 2, label
    page.button(key="make-musicxml-1").click().run()  # MusicXML is made on request
    xml = page.session_state["musicxml-1"]
    assert xml.startswith(b"<?xml")  # (the page's random draws are seeded: always this take)
    assert "MusicXML" in [b.label for b in page.download_button]
    record = json.loads(made[0].files[".json"])
    assert record["variants"] == 2
    assert record["constraints"]["bars"] == 2
    for take in made:  # exactly the bars asked for, after the seed's four
        assert take.text.count("bar") == 4 + 2


def test_a_take_music21_cannot_write_gets_a_reason_and_no_musicxml_download(
    page: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from music_lm.render.export import ExportError

    def refuse(_midi: bytes, name: str) -> bytes:
        raise ExportError(f"{name}: music21 cannot write MusicXML (a tuplet it cannot spell)")

    monkeypatch.setattr("music_lm.render.export.musicxml", refuse)
    generate(page, **{"Bars to generate": 1})
    page.button(key="make-musicxml-1").click().run()
    xml = page.session_state["musicxml-1"]
    assert xml.startswith("take-1.mid: music21 cannot write MusicXML")
    assert any(c.value == f"No MusicXML: {xml}" for c in page.caption)
    assert "MusicXML" not in [b.label for b in page.download_button]


def test_a_fixed_random_seed_gives_the_same_take_again(page: AppTest) -> None:
    widget(page.checkbox, "Random seed").uncheck()
    widget(page.number_input, "Seed number").set_value(77)
    generate(page)
    first = takes(page)[0]
    generate(page)
    second = takes(page)[0]
    assert first.number != second.number
    assert first.random_seed == second.random_seed == 77
    assert first.ids == second.ids


def test_constraints_hold_in_the_take(page: AppTest) -> None:
    widget(page.selectbox, "Keep to a key").select("D:major")
    widget(page.text_input, "Pitch range").input("D4-D5")
    generate(page, **{"Bars to generate": 2})
    take = takes(page)[0]
    constraints = Constraints(bars=2, scale=(2, "major"), pitch_range=parse_range("D4-D5"))
    start_beat = take.record["continuation_beat"]
    check_constraints(take.files[".mid"], constraints, start_beat)


def test_a_bad_option_is_one_line_and_starts_nothing(page: AppTest) -> None:
    widget(page.text_input, "Pitch range").input("C9-C1")
    button(page, "Generate").click().run()
    errors = messages(page.error)
    assert len(errors) == 1
    assert errors == ["pitch range 'C9-C1' must go up within MIDI's 0..127, got 120..24"]
    assert "job" not in page.session_state


def test_the_seeds_key_keeps_its_mode(page: AppTest) -> None:
    # bach_chorale is in F# minor: "the seed's key" is F# minor, not F# major.
    widget(page.selectbox, "Keep to a key").select("the seed's key")
    generate(page)
    take = takes(page)[0]
    assert take.record["constraints"]["scale"] == "F#:minor"
    constraints = Constraints(bars=1, scale=(6, "minor"))
    check_constraints(take.files[".mid"], constraints, take.record["continuation_beat"])


def test_a_scale_on_its_own_uses_the_seeds_tonic(page: AppTest) -> None:
    widget(page.selectbox, "Scale").select("dorian")
    generate(page)
    assert takes(page)[0].record["constraints"]["scale"] == "F#:dorian"


def test_generate_needs_a_seed_and_a_model(page: AppTest) -> None:
    widget(page.multiselect, "Models").set_value([])
    button(page, "Generate").click().run()
    assert messages(page.error) == ["Choose a model."]
    widget(page.radio, "Seed").set_value("Upload").run()
    button(page, "Generate").click().run()
    assert messages(page.error) == ["Choose a seed first."]
    assert "job" not in page.session_state


def test_a_second_generate_waits_for_the_running_one(page: AppTest) -> None:
    generate(page, wait=False, **{"Bars to generate": 32, "Variants": 4})
    button(page, "Generate").click().run()
    assert any("A generation is running" in w for w in messages(page.warning))
    button(page, "Stop").click().run()
    finish(page)


def test_without_a_soundfont_the_takes_still_come_with_a_warning(page, monkeypatch, tmp_path):
    monkeypatch.setenv("MUSIC_LM_SOUNDFONT", str(tmp_path / "missing.sf2"))
    generate(page)
    take = takes(page)[0]
    assert take.wav is None
    assert "missing.sf2" in take.audio_error
    assert any(w.startswith("No audio: ") for w in messages(page.warning))
    assert len(page.get("iframe")) == 1  # the in-browser MIDI player stands in for the WAV
    assert "WAV" not in [b.label for b in page.download_button]
    area = widget(page.text_area, "Token text of the take")
    header, rest = area.value.split("\n", 1)
    words = header.split()
    words[2] = "tempo:60"
    area.input(" ".join(words) + "\n" + rest).run()
    button(page, "Save the edit as a new take").click().run()
    assert not page.exception
    assert takes(page)[0].edited


def test_the_downloads_hold_what_they_say(page: AppTest) -> None:
    widget(page.checkbox, "Random seed").uncheck()
    widget(page.number_input, "Seed number").set_value(1)  # a take music21 can write
    generate(page)
    take = takes(page)[0]
    daw = mido.MidiFile(file=io.BytesIO(take.daw_midi))
    assert daw.type == 1
    assert daw.ticks_per_beat == 480
    xml = take.musicxml()
    assert xml.lstrip().startswith(b"<?xml")
    assert b"<score-partwise" in xml
    assert json.loads(take.files[".json"])["file"] == take.stem


def test_back_to_the_seed_of_my_choice_keeps_the_upload(page: AppTest, make_midi, note) -> None:
    data = make_midi([*note(0, 480, 60), *note(480, 480, 64), *note(960, 960, 67)])
    widget(page.radio, "Seed").set_value("Upload").run()
    page.file_uploader[0].set_value(("mine.mid", data, "audio/midi")).run()
    generate(page)
    page.button(key=f"continue-{takes(page)[0].number}").click().run()
    assert any("Continuing from" in i.value for i in page.info)
    button(page, "Back to the seed of my choice").click().run()
    assert {m.label: m.value for m in page.metric}["Notes"] == "3"  # the upload, as it was


def test_two_models_can_share_the_bars_by_schedule(page: AppTest, tiny_model, tmp_path) -> None:
    shutil.copytree(tiny_model, tmp_path / "runs" / "my-run")
    page.run()
    models = widget(page.multiselect, "Models")
    models.set_value([models.options[0], "runs/my-run"])
    widget(page.selectbox, "Mix").select("schedule")
    generate(page, **{"Bars to generate": 2})
    assert takes(page)[0].record["mix"] == "schedule"


def test_a_model_that_cannot_load_is_named(page: AppTest, tmp_path: Path, monkeypatch) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    monkeypatch.setenv("MUSIC_LM_MODEL", str(broken))
    page.run()
    button(page, "Generate").click().run()
    errors = messages(page.error)
    assert len(errors) == 1
    assert "Cannot load the model" in errors[0]
    assert str(broken) in errors[0]


def test_an_unexpected_error_shows_one_line_and_no_traceback(page, monkeypatch, caplog) -> None:
    import music_lm.page.models

    monkeypatch.delenv("MUSIC_LM_PAGE_DEBUG")

    def broken(*args, **kwargs):
        raise RuntimeError("/srv/secret/path exploded")

    monkeypatch.setattr(music_lm.page.models, "run_metrics", broken)  # the Training view's
    page.run()
    assert not page.exception
    errors = messages(page.error)
    assert errors == [
        "Something went wrong on the server (RuntimeError). Press Undo in the sidebar if your "
        "last change caused it, or reload the page to start afresh."
    ]
    assert "/srv/secret/path exploded" in caplog.text  # the server's log keeps the details


def test_stop_ends_a_running_generation(page: AppTest) -> None:
    generate(page, wait=False, **{"Bars to generate": 64, "Variants": 4})
    page.run()
    button(page, "Stop").click().run()
    finish(page)
    assert not takes(page)
    warnings = messages(page.warning)
    assert any(w.startswith("stopped after") for w in warnings), warnings


def test_a_generation_past_its_time_limit_stops_with_a_message(page: AppTest, monkeypatch):
    monkeypatch.setattr("music_lm.page.jobs.LIMITS", PageLimits(generation_seconds=0.05))
    generate(page, **{"Bars to generate": 64, "Variants": 4})
    errors = messages(page.error)
    assert any("ran past its limit of 0.05 s" in e for e in errors), errors
    assert not takes(page)


def test_progress_shows_while_the_job_runs(page: AppTest) -> None:
    generate(page, wait=False, **{"Bars to generate": 32, "Variants": 2})
    page.run()
    assert page.get("progress"), "no progress bar while generating"
    button(page, "Stop").click().run()
    finish(page)


def test_progress_shows_the_adaptation_then_the_sampling(page: AppTest, monkeypatch) -> None:
    import threading
    import time

    from music_lm.training.adapt import adapt_model

    looked = threading.Event()

    def held_after_the_first_step(*args, on_step, **options):
        def step(done: int, steps: int, loss: float) -> None:
            on_step(done, steps, loss)
            if done == 1:
                looked.wait(60)  # until the test has seen the bar

        return adapt_model(*args, on_step=step, **options)

    monkeypatch.setattr("music_lm.generation.runner.adapt_model", held_after_the_first_step)
    widget(page.checkbox, "Adapt to the seed").check()
    generate(page, wait=False, **{"Adaptation steps": 3})
    job = page.session_state["job"]
    deadline = time.monotonic() + 60
    while job.progress is None and not job.done and time.monotonic() < deadline:
        time.sleep(0.05)
    page.run()
    bars = [bar.proto.text for bar in page.get("progress")]
    looked.set()
    assert any(text.startswith("Adapting to the seed: step 1 of 3") for text in bars), bars
    finish(page)
    assert takes(page)[0].record["adaptation"][0]["steps"] == 3


# ---- continuing, undo, history ----


def test_continue_from_a_take_then_undo(page: AppTest) -> None:
    generate(page, **{"Variants": 2})
    first = takes(page)[0]
    page.button(key=f"continue-{first.number}").click().run()
    assert any("Continuing from Take 1" in i.value for i in page.info)
    bars = {m.label: m.value for m in page.metric}["Bars"]
    assert bars == "5"  # the whole take: four seed bars and the new one
    generate(page)
    newest = takes(page)[0]
    assert newest.parent == first.number
    assert newest.ids[: len(first.ids) - 1] == first.ids[:-1]  # the take, continued
    button(page, "Undo").click().run()  # back to the two takes and the continuing seed
    assert [t.number for t in takes(page)] == [1, 2]
    button(page, "Undo").click().run()  # back to the example seed
    assert not any("Continuing from" in i.value for i in page.info)
    assert widget(page.selectbox, "Example seed").value == EXAMPLES[0]
    assert len(page.session_state["history"].takes) == 3  # undo hides, never deletes


def test_an_earlier_take_can_be_shown_again_from_the_history(page: AppTest) -> None:
    generate(page)
    generate(page)
    assert [t.number for t in takes(page)] == [2]
    page.button(key="show-1").click().run()
    assert [t.number for t in takes(page)] == [1]


# ---- the token text view ----


def test_an_invalid_edit_names_the_token_and_what_was_expected(page: AppTest) -> None:
    generate(page)
    area = widget(page.text_area, "Token text of the take")
    area.input(area.value.replace("bar", "bar C4", 1)).run()
    errors = messages(page.error)
    assert len(errors) == 1
    assert errors[0].startswith("Invalid token text: token ")
    assert "'C4'" in errors[0]
    assert "expected" in errors[0]


def test_a_valid_edit_is_rendered_and_saved_as_a_new_take(page: AppTest) -> None:
    generate(page)
    take = takes(page)[0]
    area = widget(page.text_area, "Token text of the take")
    assert area.value == take.text
    assert any(s.value.startswith("Valid:") for s in page.success)
    header, rest = take.text.split("\n", 1)
    words = header.split()
    words[2] = "tempo:60"
    area.input(" ".join(words) + "\n" + rest).run()
    assert any("rendered below" in s.value for s in page.success)
    button(page, "Save the edit as a new take").click().run()
    saved = takes(page)[0]
    assert saved.edited
    assert saved.parent == take.number
    assert saved.number == 2
    assert "tempo:60" in saved.text
    assert saved.wav[:4] == b"RIFF"


# ---- the attention and training views ----


def _plotly_array(value) -> np.ndarray:
    """An array of a figure's JSON: a list, or plotly's {"dtype", "bdata", "shape"}."""
    if not isinstance(value, dict):
        return np.asarray(value, dtype=np.float64)
    flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return flat.reshape([int(n) for n in str(value.get("shape", len(flat))).split(",")])


def test_the_attention_of_a_generated_note_is_shown_per_layer_and_head(page: AppTest) -> None:
    from music_lm.page.attention import generated_notes, note_attention

    widget(page.checkbox, "Keep attention").check()
    generate(page, **{"Variants": 2})
    first, second = takes(page)
    assert first.attention is not None
    assert second.attention is None  # one variant's only: the arrays grow fast
    choice = widget(page.selectbox, "Generated note")
    notes = generated_notes(first.ids, first.seed_length)
    assert len(choice.options) == len(notes)
    choice.select_index(len(notes) - 1).run()
    assert not page.exception
    charts = page.get("plotly_chart")
    # the seed's roll, the takes' rolls, then the summary and the per-layer heatmaps
    assert len(charts) == 5
    heads = json.loads(charts[-1].proto.spec)
    layers, heads_per_layer = first.attention.shape[:2]
    heatmaps = [t for t in heads["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == layers
    # each layer's cells: the chosen (last) note's attention to the notes before it, to the
    # structure and to the notes left out, one row per head
    na = note_attention(first.attention, first.ids, first.seed_length, notes[-1])
    blocks = [na.weights, na.structure[..., None]]
    blocks += [na.other_notes[..., None]] if na.left_out else []
    expected = np.concatenate(blocks, axis=-1)
    assert expected.shape[:2] == (layers, heads_per_layer)
    for layer, heatmap in enumerate(heatmaps):
        assert _plotly_array(heatmap["z"]) == pytest.approx(expected[layer], abs=1e-6)


def test_a_note_clicked_on_the_roll_is_picked_for_the_attention_view(page: AppTest) -> None:
    from music_lm.page.attention import generated_notes
    from music_lm.render.roll_layout import roll_notes

    widget(page.checkbox, "Keep attention").check()
    generate(page, **{"Variants": 1})
    take = takes(page)[0]
    notes = generated_notes(take.ids, take.seed_length)
    rolled = roll_notes(take.score)
    tracks = sorted({n.track for n in rolled})
    ppq = take.score.ticks_per_beat

    def same(roll_note, note) -> bool:
        return (roll_note.track, round(roll_note.onset_beats * ppq), roll_note.pitch,
                round(roll_note.duration_beats * ppq)) == (
                note.track, note.onset_tick, note.pitch, note.duration_ticks)  # fmt: skip

    # the last new note that has no twin (same pitch, onset and length in its track)
    wanted = max(i for i, n in enumerate(notes) if sum(same(r, n) for r in rolled) == 1)
    target = notes[wanted]
    mine = [n for n in rolled if n.track == target.track]
    point = next(i for i, n in enumerate(mine) if same(n, target))
    click = {"selection": {"points": [{"curve_number": tracks.index(target.track),
                                       "point_index": point}]}}  # fmt: skip
    page.session_state[f"roll-{take.number}"] = click
    page.run()
    assert not page.exception
    assert widget(page.selectbox, "Generated note").value == wanted


def test_the_training_view_plots_a_runs_losses(page: AppTest, tiny_model: Path, tmp_path: Path):
    run = tmp_path / "runs" / "my-run"
    shutil.copytree(tiny_model, run)
    rows = [{"step": 10, "train_loss": 3.0}, {"step": 20, "train_loss": 2.5, "val_loss": 2.7}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut')
    page.run()
    widget(page.selectbox, "Run").select_index(1).run()
    assert not page.exception
    figure = json.loads(page.get("plotly_chart")[-1].proto.spec)
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["train loss", "validation loss"]
    assert figure["data"][0]["y"] == [3.0, 2.5]


def test_a_run_is_a_model_choice_and_two_models_mix(page: AppTest, tiny_model, tmp_path):
    shutil.copytree(tiny_model, tmp_path / "runs" / "my-run")
    page.run()
    models = widget(page.multiselect, "Models")
    models.set_value([models.options[0], "runs/my-run"])
    generate(page)
    record = takes(page)[0].record
    assert record["mix"] == "weights"
    assert len(record["models"]) == 2


# ---- sessions ----


def test_two_sessions_do_not_see_each_others_uploads_or_takes(page, make_midi, note) -> None:
    other = AppTest.from_file(APP, default_timeout=120)
    other.run()
    widget(page.radio, "Seed").set_value("Upload").run()
    data = make_midi([*note(0, 480, 60), *note(480, 480, 64)])
    page.file_uploader[0].set_value(("mine.mid", data, "audio/midi")).run()
    generate(page)
    other.run()
    assert "job" not in other.session_state
    assert "upload" not in other.session_state
    assert not other.session_state["history"].takes
    assert widget(other.selectbox, "Example seed").value == EXAMPLES[0]
    assert len(page.session_state["history"].takes) == 1
