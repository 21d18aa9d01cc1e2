"""--sustain: the sustain pedal (CC64) applied as a piano does it. Off by default."""

from __future__ import annotations

from fractions import Fraction

import mido
import pytest

import music_lm
from music_lm.cli import app

PEDAL = 64
F = Fraction  # times in quarter notes, exactly


def pedal(tick: int, down: bool, channel: int = 0) -> tuple[int, mido.Message]:
    value = 127 if down else 0
    return (tick, mido.Message("control_change", channel=channel, control=PEDAL, value=value))


def notes_in_quarters(data: bytes, sustain: bool) -> list[tuple[int, F, F]]:
    score = music_lm.read_midi(data, sustain=sustain).score
    q = score.ticks_per_beat
    return sorted(
        (n.pitch, F(n.onset_tick, q), F(n.duration_tick, q)) for t in score.tracks for n in t.notes
    )


@pytest.fixture
def pedalled(make_midi, note) -> bytes:
    # Pedal down on beat 1, lifted on beat 3; C4 and E4 are released under it,
    # G4 is released after the pedal is up.
    return make_midi(
        [
            pedal(0, True),
            *note(0, 240, 60),
            *note(240, 240, 64),
            pedal(960, False),
            *note(960, 480, 67),
        ]
    )


def test_without_sustain_notes_end_at_their_note_off_and_the_pedal_is_reported(pedalled):
    assert notes_in_quarters(pedalled, sustain=False) == [
        (60, F(0), F(1, 2)),
        (64, F(1, 2), F(1, 2)),
        (67, F(2), F(1)),
    ]
    changes = music_lm.encode_midi(pedalled).changes
    assert changes.dropped["controller CC64 (sustain pedal)"] == 2


def test_with_sustain_notes_released_under_the_pedal_sound_until_it_lifts(pedalled):
    assert notes_in_quarters(pedalled, sustain=True) == [
        (60, F(0), F(2)),
        (64, F(1, 2), F(3, 2)),
        (67, F(2), F(1)),  # released with the pedal up: unchanged
    ]
    changes = music_lm.encode_midi(pedalled, sustain=True).changes
    assert "controller CC64 (sustain pedal)" not in changes.dropped
    assert changes.remarks["notes lengthened by the sustain pedal (--sustain)"] == 2


def test_a_key_struck_again_under_the_pedal_ends_the_held_note(make_midi, note):
    data = make_midi([pedal(0, True), *note(0, 240, 60), *note(480, 240, 60), pedal(1920, False)])
    assert notes_in_quarters(data, sustain=True) == [(60, F(0), F(1)), (60, F(1), F(3))]


def test_the_pedal_acts_on_its_own_channel_only(make_midi, note):
    data = make_midi(
        [pedal(0, True, channel=1), *note(0, 240, 60), pedal(960, False, channel=1)],
        [*note(0, 240, 48, channel=1)],
    )
    assert notes_in_quarters(data, sustain=True) == [(48, F(0), F(2)), (60, F(0), F(1, 2))]


def test_a_pedal_never_lifted_holds_to_the_end_of_its_track(make_midi, note):
    data = make_midi([pedal(0, True), *note(0, 240, 60), (1440, mido.MetaMessage("end_of_track"))])
    assert notes_in_quarters(data, sustain=True) == [(60, F(0), F(3))]


def test_sustained_text_round_trips_exactly(pedalled):
    text = music_lm.midi_to_text(pedalled, sustain=True)
    assert music_lm.midi_to_text(music_lm.text_to_midi(text)) == text
    assert "d:2 v:" in text  # C4 now lasts the two quarter notes the pedal held it


def test_the_cli_applies_the_pedal_with_sustain(tmp_path, pedalled):
    from typer.testing import CliRunner

    path = tmp_path / "pedal.mid"
    path.write_bytes(pedalled)
    runner = CliRunner()
    plain = runner.invoke(app, ["inspect", str(path)])
    held = runner.invoke(app, ["inspect", str(path), "--sustain"])
    assert plain.exit_code == held.exit_code == 0
    assert "CC64 (sustain pedal) 2" in plain.stdout
    assert "lengthened by the sustain pedal" not in plain.stdout
    assert "while reading: 2 notes lengthened by the sustain pedal (--sustain)" in held.stdout
    # encode: C4 lasts the two quarters the pedal held it with --sustain, its half without
    # (the same C4 in both texts: only its duration word tells the runs apart)
    encoded = {flag: runner.invoke(app, ["encode", str(path), *flag]).stdout
               for flag in ((), ("--sustain",))}  # fmt: skip
    assert "bar @0 t1 d:1/2 v:64 C4 @1/2 E4" in encoded[()]
    assert "bar @0 t1 d:2 v:64 C4 @1/2 d:1+1/2 E4" in encoded[("--sustain",)]
    # roundtrip writes the lengthened notes into its MIDI
    out = tmp_path / "out"
    assert runner.invoke(app, ["roundtrip", str(path), "-o", str(out), "--sustain"]).exit_code == 0
    assert notes_in_quarters((out / "pedal.mid").read_bytes(), sustain=False)[0] == (60, F(0), F(2))
