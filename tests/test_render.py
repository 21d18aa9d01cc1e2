"""Hear it, see it, take it to a DAW: FluidSynth audio, piano rolls, DAW-ready exports.

Audio is checked by measuring it (level, length, clipping, what drums change); piano
rolls by reading pixels where the notes and the seed are drawn; exports by reading them
back with mido, pretty_midi, music21 and, where installed, MuseScore 3.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import wave
from pathlib import Path

import mido
import numpy as np
import pytest
from conftest import build_midi, note_events
from external import requires
from typer.testing import CliRunner

from music_lm.cli import app
from music_lm.midi.read import read_midi
from music_lm.midi.score import Note, Score, TempoChange, TimeSignature, Track
from music_lm.midi.write import write_midi
from music_lm.render.audio import (
    AudioError,
    encode_audio,
    find_soundfont,
    render_midi,
    render_score,
    tick_seconds,
)
from music_lm.render.export import daw_midi, export_midi, musicxml
from music_lm.render.pianoroll import (
    REGION_SHADE,
    SEED_SHADE,
    bar_tick,
    continuation_tick,
    infill_region,
    midi_pianoroll,
    pianoroll_axes,
    pianoroll_figure,
)
from music_lm.render.roll_layout import (
    Lane,
    NoteBox,
    bar_and_beat,
    opacity,
    roll_layout,
    track_colour,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "midi_in"
TIM = Path(__import__("pretty_midi").__file__).parent / "TimGM6mb.sf2"
PPQ = 480


def phrase(is_drum: bool = False, program: int = 0, bpm: float = 120.0) -> Score:
    """Four quarter notes (or snare hits) at `bpm`: 2 s of music at 120."""
    pitch = 38 if is_drum else 60
    notes = [Note(i * PPQ, PPQ, pitch + (0 if is_drum else 2 * i), 100) for i in range(4)]
    return Score(PPQ, [Track(program, is_drum, notes)], [TempoChange(0, bpm)],
                 [TimeSignature(0, 4, 4)])  # fmt: skip


def wav_samples(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        return frames, w.getframerate()


# ---- audio ----


def test_a_phrase_renders_audible_at_its_length_with_headroom() -> None:
    rendered = render_score(phrase(program=0))
    frames, rate = wav_samples(encode_audio(rendered))
    seconds = len(frames) / rate
    assert rate == 44100
    assert 2.0 <= seconds <= 2.0 + 6.0  # the notes, then at most the release tail
    peak = np.abs(frames).max() / 32768
    assert 0.85 < peak < 0.9  # normalised to -1 dBFS: loud, never clipped
    rms = np.sqrt(np.mean((frames / 32768.0) ** 2))
    assert rms > 0.02  # really sounding, not a click
    # every quarter note sounds: each half second has energy
    for k in range(4):
        part = frames[int(k * 0.5 * rate) : int((k + 0.5) * rate)]
        assert np.abs(part).max() > 0.05 * 32768
    # the tail is trimmed: the last 10 ms are not digital silence
    assert np.abs(frames[-int(0.01 * rate) :]).max() > 0


def test_the_length_follows_the_tempo_map() -> None:
    slow = render_score(phrase(bpm=60.0))  # 4 s of notes
    assert 4.0 <= slow.seconds <= 10.0
    score = phrase()
    score.tempos = [TempoChange(0, 120.0), TempoChange(2 * PPQ, 60.0)]
    to_seconds = tick_seconds(score)
    assert to_seconds(2 * PPQ) == pytest.approx(1.0)
    assert to_seconds(4 * PPQ) == pytest.approx(3.0)


def test_drums_sound_as_drums_and_programs_as_their_instruments() -> None:
    snare = render_score(phrase(is_drum=True)).samples
    melodic = render_score(Score(PPQ, [Track(0, False, phrase(True).tracks[0].notes)])).samples
    flute = render_score(phrase(program=73)).samples
    piano = render_score(phrase(program=0)).samples
    n = min(len(snare), len(melodic))
    assert not np.allclose(snare[:n], melodic[:n], atol=0.05)

    # a piano's D2 puts much of its energy on its 73 Hz fundamental; a snare drum does not
    def share_near_d2(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x[:22050, 0])) ** 2
        freqs = np.fft.rfftfreq(22050, 1 / 44100)
        return float(spectrum[(freqs >= 60) & (freqs < 90)].sum() / spectrum.sum())

    assert share_near_d2(melodic) > 0.2
    assert share_near_d2(snare) < 0.02
    n = min(len(flute), len(piano))
    assert not np.allclose(flute[:n], piano[:n], atol=0.05)


def test_renders_are_reproducible_and_independent_across_threads() -> None:
    first = render_score(phrase(program=40)).samples
    render_score(phrase(is_drum=True))  # something else in between
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(target=lambda: results.append(render_score(phrase(program=40)).samples))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3
    assert all(np.array_equal(first, r) for r in results)


def test_an_empty_score_renders_silence_without_error() -> None:
    rendered = render_score(Score(PPQ, [Track(0, False, [])]))
    assert rendered.seconds < 0.1


def test_flac_and_ogg_and_other_rates() -> None:
    soundfile = pytest.importorskip("soundfile")
    rendered = render_score(phrase(), sample_rate=22050)
    for fmt in ("flac", "ogg"):
        data, rate = soundfile.read(io.BytesIO(encode_audio(rendered, fmt)))
        assert rate == 22050
        assert abs(len(data) - len(rendered.samples)) < 2048
        assert np.abs(data).max() > 0.5
    with pytest.raises(AudioError, match="--sample-rate"):
        render_score(phrase(), sample_rate=12345)
    with pytest.raises(AudioError, match="--format"):
        encode_audio(rendered, "mp3")


FLUIDR3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm


@requires("the FluidR3_GM soundfont", FLUIDR3.is_file(), "apt install fluid-soundfont-gm")
def test_fluidr3_is_the_soundfont_every_render_uses_by_default(monkeypatch) -> None:
    # Without it every render falls back to TimGM6mb and the figures of the other tests
    # (levels, drums, lengths) are taken on another soundfont than the documented one.
    monkeypatch.delenv("MUSIC_LM_SOUNDFONT", raising=False)
    assert find_soundfont() == FLUIDR3
    assert render_score(phrase()).soundfont == str(FLUIDR3)


def test_the_soundfont_bundled_with_pretty_midi_works_alone(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MUSIC_LM_SOUNDFONT", str(TIM))
    assert find_soundfont() == TIM
    rendered = render_score(phrase())
    assert rendered.soundfont == str(TIM)
    assert np.abs(rendered.samples).max() > 0.5
    with pytest.raises(AudioError, match=r"nope\.sf2: soundfont not found"):
        find_soundfont(tmp_path / "nope.sf2")


# ---- piano rolls ----


def _pixel(png: bytes, xy) -> np.ndarray:
    import matplotlib.image as mpimg

    image = mpimg.imread(io.BytesIO(png), format="png")
    x, y = xy
    return image[image.shape[0] - round(y), round(x), :3]


WHITE = np.ones(3)
SHADE = np.array(SEED_SHADE[:3]) * SEED_SHADE[3] + (1 - SEED_SHADE[3])  # the seed's bars


def _note_rgb(track: int, velocity: int, background: np.ndarray) -> np.ndarray:
    """The colour of a note of `track` drawn over `background` (velocity is opacity)."""
    from matplotlib.colors import to_rgb

    alpha = opacity(velocity)
    return alpha * np.array(to_rgb(track_colour(track))) + (1 - alpha) * background


def _roll_axes(score: Score, continuation_at: int | None, width_px: int, height_px: int):
    """(pitched axes, drum axes) laid out as in a PNG of this score and size: where a
    (beat, row) point of that PNG is in pixels."""
    fig, ax_pitch, ax_drum = pianoroll_axes(score, continuation_at, None, width_px, height_px)
    fig.savefig(io.BytesIO(), format="png", dpi=100)
    return ax_pitch, ax_drum


def _at(png: bytes, ax, beats: float, row: float) -> np.ndarray:
    return _pixel(png, ax.transData.transform((beats, row)))


def test_a_piano_roll_has_its_size_a_colour_per_track_and_the_seed_shaded() -> None:
    score = Score(
        PPQ,
        [
            Track(73, False, [Note(0, 4 * PPQ, 72, 127), Note(8 * PPQ, 4 * PPQ, 72, 127)]),
            Track(33, False, [Note(0, 4 * PPQ, 40, 127), Note(8 * PPQ, 4 * PPQ, 40, 127)]),
            Track(0, True, [Note(i * PPQ, PPQ // 2, 36, 127) for i in range(12)]),
        ],
        [TempoChange(0, 120.0)],
        [TimeSignature(0, 4, 4)],
    )
    fig, ax_pitch, ax_drum = pianoroll_axes(score, continuation_at=4 * PPQ)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    png = png.getvalue()
    import matplotlib.image as mpimg

    assert mpimg.imread(io.BytesIO(png)).shape[:2] == (900, 1600)
    from matplotlib.colors import to_rgb

    to_px = lambda ax, x, y: ax.transData.transform((x, y))  # noqa: E731
    for ax, (x, y), colour in (
        (ax_pitch, (10, 72), track_colour(0)),  # flute, in the new bars
        (ax_pitch, (10, 40), track_colour(1)),  # bass
        (ax_drum, (9.1, 0), track_colour(2)),  # drums, in their own lane
    ):
        assert np.allclose(_pixel(png, to_px(ax, x, y)), to_rgb(colour), atol=0.03)
    # the seed (bar 1) is shaded grey, the new bars are white, where no note is drawn
    shade = np.array(SEED_SHADE[:3]) * SEED_SHADE[3] + (1 - SEED_SHADE[3])
    assert np.allclose(_pixel(png, to_px(ax_pitch, 2, 56)), shade, atol=0.03)
    assert np.allclose(_pixel(png, to_px(ax_pitch, 6, 56)), 1.0, atol=0.01)
    # the continuation line is red
    assert _pixel(png, to_px(ax_pitch, 4, 56))[0] > 0.7


def test_the_continuation_is_read_from_the_generation_marker(tmp_path) -> None:
    score = phrase()
    data = write_midi(score, markers=[(2 * PPQ, "music_lm continuation")])
    read = read_midi(data)
    assert continuation_tick(read) == 2 * PPQ
    assert bar_tick(read.score, 1) == 0
    # The PNG: each of the four notes (C4 D4 E4 F#4, a quarter each) is coloured in its
    # row from the start of its beat to the end, over the grey seed for the first two; the
    # other rows are empty.
    from matplotlib.colors import to_rgb

    png = midi_pianoroll(data, width_px=800, height_px=450)
    ax, _ = _roll_axes(read.score, 2 * PPQ, 800, 450)
    pitches = (60, 62, 64, 66)
    for beat, pitch in enumerate(pitches):
        background = SHADE if beat < 2 else WHITE
        for x in (beat + 0.1, beat + 0.5, beat + 0.9):
            drawn = _at(png, ax, x, pitch)
            assert np.allclose(drawn, _note_rgb(0, 100, background), atol=0.03), (x, drawn)
            for empty in {pitch - 1, pitch + 1, *pitches} - {pitch}:
                assert np.allclose(_at(png, ax, x, empty), background, atol=0.03)
    assert np.allclose(_at(png, ax, 2, 61), to_rgb("#d62728"), atol=0.1)  # where it goes on
    # The Plotly figure: one bar per note, from its onset for its duration in its row.
    fig = pianoroll_figure(read.score, continuation_tick(read))
    (notes,) = fig.data
    assert notes.name == "1 Acoustic Grand Piano"
    assert list(notes.base) == [0, 1, 2, 3]
    assert list(notes.x) == [1, 1, 1, 1]
    assert list(notes.y) == [60, 62, 64, 66]
    assert list(notes.marker.opacity) == [opacity(100)] * 4
    (seed,) = [s for s in fig.layout.shapes if s.type == "rect"]
    assert (seed.x0, seed.x1) == (0, 2)
    (mark,) = [s for s in fig.layout.shapes if s.line.color == "#d62728"]
    assert (mark.x0, mark.x1) == (2, 2)
    bar_lines = [s.x0 for s in fig.layout.shapes if s.type == "line" and s is not mark]
    assert bar_lines == [0, 4]  # the one bar, start and end


def test_an_infills_region_is_read_from_its_markers_and_shaded() -> None:
    """`music-lm infill` marks the region it drew anew; the PNG shades exactly those bars
    (here beats 1 to 3 of a four-beat phrase) in the page's orange, and nothing else."""
    score = phrase()
    data = write_midi(score, markers=[(PPQ, "music_lm infill: bar 2"),
                                      (3 * PPQ, "music_lm infill end: bar 3")])  # fmt: skip
    read = read_midi(data)
    assert infill_region(read) == (PPQ, 3 * PPQ)
    assert infill_region(read_midi(write_midi(score))) is None
    png = midi_pianoroll(data, width_px=800, height_px=450)
    fig, ax, _ = pianoroll_axes(read.score, None, None, 800, 450, (PPQ, 3 * PPQ))
    fig.savefig(io.BytesIO(), format="png", dpi=100)
    orange = np.array(REGION_SHADE[:3]) * REGION_SHADE[3] + (1 - REGION_SHADE[3])
    for beats, expected in ((0.5, WHITE), (1.5, orange), (2.5, orange), (3.5, WHITE)):
        assert np.allclose(_at(png, ax, beats, 70), expected, atol=0.03), beats  # no note there


def test_the_layout_both_rolls_draw_is_plain_data() -> None:
    """A flute and a drum kit, the seed its first bar: each track's rectangles in its own
    colour and lane, the lanes' ranges and labels, the bars and the seed's span."""
    score = Score(
        PPQ,
        [
            Track(73, False, [Note(0, 4 * PPQ, 72, 127), Note(4 * PPQ, 2 * PPQ, 75, 64)]),
            Track(0, True, [Note(i * PPQ, PPQ // 2, 38 if i % 2 else 36, 100) for i in range(8)]),
        ],
        [TempoChange(0, 120.0)],
        [TimeSignature(0, 4, 4)],
    )
    layout = roll_layout(score, continuation_at=4 * PPQ)
    flute, kit = layout.tracks
    assert (flute.index, flute.label, flute.colour, flute.drums) == (0, "1 flute", "#1f77b4", False)
    assert flute.notes == (
        NoteBox(0.0, 4.0, 72, "C5", 127, 1.0),
        NoteBox(4.0, 2.0, 75, "D#5", 64, opacity(64)),
    )
    assert (kit.index, kit.label, kit.colour, kit.drums) == (1, "2 Drums", "#ff7f0e", True)
    # drums in rows of their own from 0, the lowest key at the bottom
    assert [(n.onset_beats, n.row, n.name) for n in kit.notes[:2]] == [
        (0.0, 0, "Bass drum 1"),
        (1.0, 1, "Acoustic snare"),
    ]
    assert {n.duration_beats for n in kit.notes} == {0.5}
    # the pitch axis: the notes' span and a free row each side, every note named
    assert layout.pitch_lane == Lane(
        "pitch", (70.5, 76.5), (71, 72, 73, 74, 75, 76), ("B4", "C5", "C#5", "D5", "D#5", "E5")
    )
    assert layout.drum_lane == Lane("drums", (-0.6, 1.6), (0, 1), ("Bass drum 1", "Acoustic snare"))
    assert layout.end_beats == 7.5
    assert layout.bar_lines == layout.bar_label_at == (0, 4)
    assert layout.bar_labels == ("1", "2")
    assert layout.seed_end_beats == 4.0
    assert bar_and_beat(layout, 5.5) == "bar 2, beat 2.50"


def test_the_layout_thins_its_labels_and_leaves_out_what_is_absent() -> None:
    """A wide melody over 80 bars, no drums and no seed: a C on the axis every octave, a
    bar number every third bar (at most ~32), no drum lane and no seed."""
    notes = [Note(i * 4 * PPQ, PPQ, 36 + i % 40, 90) for i in range(80)]
    score = Score(PPQ, [Track(0, False, notes)], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)])
    layout = roll_layout(score)
    assert layout.pitch_lane is not None
    assert layout.pitch_lane.tick_labels == ("C2", "C3", "C4", "C5")
    assert len(layout.bar_lines) == 80
    assert layout.bar_labels[:3] == ("1", "4", "7")
    assert len(layout.bar_labels) == 27
    assert layout.bar_label_at[1] == 12.0  # bar 4, in quarter notes
    assert (layout.drum_lane, layout.seed_end_beats) == (None, None)


# ---- exports ----


def _readers_agree(data: bytes, score: Score) -> None:
    """mido, pretty_midi and music21 see the score's notes, programs, tempi and meters."""
    import music21
    import pretty_midi

    midi = mido.MidiFile(file=io.BytesIO(data))
    assert midi.ticks_per_beat == 480
    ons = sum(1 for t in midi.tracks for m in t if m.type == "note_on" and m.velocity)
    assert ons == score.note_count
    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    expected = sorted((t.program, t.is_drum, len(t.notes)) for t in score.tracks)
    assert sorted((i.program, i.is_drum, len(i.notes)) for i in pm.instruments) == expected
    _times, bpms = pm.get_tempo_changes()
    assert [round(b, 3) for b in bpms] == [round(t.bpm, 3) for t in score.tempos]
    assert [(s.numerator, s.denominator) for s in pm.time_signature_changes] == [
        (t.numerator, t.denominator) for t in score.time_signatures
    ]
    parsed = music21.converter.parse(data, format="midi")
    meters = {ts.ratioString for ts in parsed.recurse().getElementsByClass("TimeSignature")}
    assert meters == {f"{t.numerator}/{t.denominator}" for t in score.time_signatures}


def band() -> Score:
    return Score(
        PPQ,
        [
            Track(73, False, [Note(i * PPQ, PPQ, 72 + i % 5, 90) for i in range(14)]),
            Track(33, False, [Note(i * 2 * PPQ, 2 * PPQ, 40, 90) for i in range(7)]),
            Track(0, True, [Note(i * PPQ, PPQ // 2, 36 + 2 * (i % 2), 100) for i in range(14)]),
        ],
        [TempoChange(0, 100.0), TempoChange(8 * PPQ, 140.0)],
        [TimeSignature(0, 4, 4), TimeSignature(8 * PPQ, 3, 4)],
    )


def test_daw_exports_read_back_alike_in_format_1_and_0() -> None:
    score = band()
    data, read = export_midi(write_midi(score, markers=[(4 * PPQ, "music_lm continuation")]))
    assert mido.MidiFile(file=io.BytesIO(data)).type == 1
    _readers_agree(data, score)
    assert continuation_tick(read_midi(data)) == 4 * PPQ  # the marker survives
    zero = daw_midi(read, midi_format=0)
    midi0 = mido.MidiFile(file=io.BytesIO(zero))
    assert midi0.type == 0
    assert len(midi0.tracks) == 1
    _readers_agree(zero, score)
    tracks = {(m.channel, m.program) for m in midi0.tracks[0] if m.type == "program_change"}
    assert tracks == {(0, 73), (1, 33), (9, 0)}


def test_musicxml_has_a_part_per_instrument_and_a_percussion_part() -> None:
    import music21

    xml = musicxml(write_midi(band()))
    parsed = music21.converter.parse(xml, format="musicxml")
    programs = [p.getInstrument().midiProgram for p in parsed.parts]
    assert programs[:2] == [73, 33]
    assert len(parsed.parts) == 3
    assert list(parsed.parts[2].recurse().getElementsByClass("Unpitched"))
    meters = [t.ratioString for t in parsed.parts[0].recurse().getElementsByClass("TimeSignature")]
    assert meters == ["4/4", "3/4"]


MSCORE = shutil.which("mscore3") or shutil.which("musescore3")


@requires("MuseScore 3", MSCORE, "apt install musescore3")
def test_musescore_imports_the_export_intact(tmp_path) -> None:
    """A third-party reader: MuseScore 3 turns our DAW-ready MIDI into MusicXML with the
    parts, instruments, percussion, tempo changes and meters intact."""
    import music21

    midi = tmp_path / "band.mid"
    midi.write_bytes(export_midi(write_midi(band()))[0])
    out = tmp_path / "band.musicxml"
    subprocess.run(
        [MSCORE, "-o", str(out), str(midi)],
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=True,
        capture_output=True,
        timeout=120,
    )
    parsed = music21.converter.parse(out)
    parts = list(parsed.parts)
    assert len(parts) == 3
    assert [p.getInstrument().midiProgram for p in parts[:2]] == [73, 33]
    assert parts[2].getInstrument().midiChannel == 9
    assert list(parts[2].recurse().getElementsByClass("Unpitched"))
    marks = [round(m.number) for m in parts[0].recurse().getElementsByClass("MetronomeMark")]
    assert marks == [100, 140]
    meters = [t.ratioString for t in parts[0].recurse().getElementsByClass("TimeSignature")]
    assert meters == ["4/4", "3/4"]


# ---- the commands ----


def _assert_band_drawn(png: bytes, score: Score) -> None:
    """`band()`'s notes are where its piano roll (1600 x 900, seed up to bar 2) shows
    them, each in its track's colour, and the rows and beats beside them are empty."""
    ax_pitch, ax_drum = _roll_axes(score, bar_tick(score, 2), 1600, 900)
    assert bar_tick(score, 2) == 4 * PPQ

    def background(beat: float) -> np.ndarray:
        return SHADE if beat < 4 else WHITE

    for i in range(14):
        flute, x = 72 + i % 5, i + 0.5
        assert np.allclose(_at(png, ax_pitch, x, flute), _note_rgb(0, 90, background(x)),
                           atol=0.03), f"flute note {i}"  # fmt: skip
        for empty in {flute - 1, flute + 1, *range(72, 77)} - {flute}:
            assert np.allclose(_at(png, ax_pitch, x, empty), background(x), atol=0.03)
        kick_or_snare = i % 2
        x = i + 0.25
        assert np.allclose(_at(png, ax_drum, x, kick_or_snare), _note_rgb(2, 100, background(x)),
                           atol=0.03), f"drum hit {i}"  # fmt: skip
        assert np.allclose(_at(png, ax_drum, x, 1 - kick_or_snare), background(x), atol=0.03)
        assert np.allclose(_at(png, ax_drum, i + 0.75, kick_or_snare), background(i + 0.75),
                           atol=0.03)  # fmt: skip
    for i in range(7):
        x = 2 * i + 0.5
        assert np.allclose(_at(png, ax_pitch, x, 40), _note_rgb(1, 90, background(x)),
                           atol=0.03), f"bass note {i}"  # fmt: skip
        assert np.allclose(_at(png, ax_pitch, x, 41), background(x), atol=0.03)


def test_render_pianoroll_and_export_commands(tmp_path) -> None:
    runner = CliRunner()
    song = tmp_path / "song.mid"
    song.write_bytes(write_midi(band()))
    result = runner.invoke(app, ["render", str(song), "-o", str(tmp_path / "song.wav")])
    assert result.exit_code == 0, result.output
    frames, rate = wav_samples((tmp_path / "song.wav").read_bytes())
    assert len(frames) / rate > 8 * 60 / 100 + 6 * 60 / 140 - 0.1
    result = runner.invoke(app, ["pianoroll", str(song), "-o", str(tmp_path / "roll.png"),
                                 "--continuation-from", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    _assert_band_drawn((tmp_path / "roll.png").read_bytes(), read_midi(song).score)
    xml = tmp_path / "song.musicxml"
    result = runner.invoke(
        app,
        ["export", str(song), "-o", str(tmp_path / "daw.mid"), "--type0", "--musicxml", str(xml)],
    )
    assert result.exit_code == 0, result.output
    assert mido.MidiFile(tmp_path / "daw.mid").type == 0
    assert b"<score-partwise" in (tmp_path / "song.musicxml").read_bytes()
    # nothing is overwritten without --force
    before = (tmp_path / "song.wav").stat().st_mtime_ns
    result = runner.invoke(app, ["render", str(song), "-o", str(tmp_path / "song.wav")])
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert (tmp_path / "song.wav").stat().st_mtime_ns == before


def test_a_bad_file_is_one_line_and_no_output(tmp_path) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00")
    good = tmp_path / "good.mid"
    good.write_bytes(build_midi([(0, mido.MetaMessage("set_tempo", tempo=500000))],
                                note_events(0, 480, 60)))  # fmt: skip
    runner = CliRunner()
    for command, suffix in (("render", ".wav"), ("pianoroll", ".png"), ("export", ".mid")):
        out = tmp_path / command
        result = runner.invoke(app, [command, str(tmp_path), "-o", str(out)])
        assert result.exit_code == 2
        assert f"{bad}: truncated MIDI file" in result.output
        assert not (out / f"bad{suffix}").exists()
        assert (out / f"good{suffix}").exists()
    result = runner.invoke(app, ["render", str(good), "--soundfont", str(tmp_path / "x.sf2"),
                                 "-o", str(tmp_path / "x.wav")])  # fmt: skip
    assert result.exit_code == 2
    assert "x.sf2: soundfont not found" in result.output


def test_the_examples_render_at_a_sane_level() -> None:
    """Listen-check by measurement: every bundled example is audible, unclipped, and as
    long as its notes."""
    for path in sorted(EXAMPLES.glob("*.mid")):
        read = read_midi(path, sustain=True)
        rendered = render_midi(path)
        notes_end = tick_seconds(read.score)(read.score.end_tick)
        assert notes_end - 0.05 <= rendered.seconds <= notes_end + 6.0, path.name
        rms = float(np.sqrt(np.mean(rendered.samples**2)))
        assert 0.02 < rms < 0.5, path.name
        assert np.abs(rendered.samples).max() <= 0.8913, path.name
