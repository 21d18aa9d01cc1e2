"""Write the example seed MIDI files in midi_in/ from music21's bundled corpus.

Every source is public domain (its composer died more than 70 years ago, or it is a
traditional tune from a 19th-century collection) and ships inside the music21
package, so nothing is downloaded. Each run writes byte-identical files.

    python midi_in/make_examples.py

Three files are written by music21's own MIDI writer (10080 ticks per quarter, a
conductor track first) the way the corpus writes music21's pieces
(`music_lm.corpus.sources.music21_score_midi`): a pickup stays a short first bar, as
notated, and a time signature restating the meter starts the first full bar. The band
arrangement is written with mido (480 PPQ) so that its drum track and channel layout
are exactly as specified. After writing, every
file is read back with mido and pretty_midi and a summary is printed.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import mido
from music21 import corpus, duration, instrument, key, meter, note, stream, tempo

from music_lm.corpus.sources import music21_score_midi

try:
    import pretty_midi
except ImportError:  # pretty_midi comes with the [audio] extra; only the summary uses it
    pretty_midi = None  # type: ignore[assignment]

OUT_DIR = Path(__file__).resolve().parent

# Every note must start and end on this grid: 24 steps per quarter note holds
# 1/2, 1/3, 1/4, 1/6, 1/8, 1/12 and 1/24 of a quarter, so the files round-trip exactly.
GRID_PER_QUARTER = 24
DRUM_CHANNEL = 9  # MIDI channel 10, counted from zero


# --- music21 helpers ------------------------------------------------------------------


def _parse(path: str, number: int | None = None) -> stream.Score:
    """Parse one work from music21's corpus; `number` picks a tune out of an ABC book."""
    work = corpus.parse(path, number=number) if number is not None else corpus.parse(path)
    if not isinstance(work, stream.Score):
        raise TypeError(f"{path} #{number}: expected one score, got {type(work).__name__}")
    return work


def _set_instruments(score: stream.Score, instruments: Sequence[instrument.Instrument]) -> None:
    """Give each part a GM instrument, keeping the part's name as the MIDI track name.

    music21 assigns MIDI channels by program: parts that share a program share a channel.
    """
    if len(instruments) != len(score.parts):
        raise ValueError(f"{len(score.parts)} parts but {len(instruments)} instruments")
    for part, inst in zip(score.parts, instruments, strict=True):
        for site in part.recurse(streamsOnly=True, includeSelf=True):
            site.removeByClass(instrument.Instrument)
        inst.partName = part.partName
        part.insert(0, inst)


def _music21_midi(score: stream.Score) -> bytes:
    """The score as a standard MIDI file, written by music21 (format 1, 10080 PPQ) as the
    corpus writes it: a pickup stays a short first bar (a time signature restating the
    meter starts the first full bar)."""
    return music21_score_midi(score)


# --- 1. a Bach chorale ------------------------------------------------------------------


def bach_chorale() -> bytes:
    """BWV 66.6, four voices as a woodwind quartet: F# minor, 4/4, one-beat pickup.

    A distinct program per voice gives each voice its own channel (see _set_instruments).
    The file keeps the corpus's own tempo mark (quarter = 96).
    """
    score = _parse("bach/bwv66.6")
    _set_instruments(
        score, [instrument.Flute(), instrument.Oboe(), instrument.Clarinet(), instrument.Bassoon()]
    )
    return _music21_midi(score)


# --- 2. a folk tune -----------------------------------------------------------------------


def folk_tune() -> bytes:
    """'The Humours of Glyn' (O'Neill's 1850, no. 176): a jig in 6/8, B minor, on fiddle.

    It has a one-eighth pickup (a short first bar), 16th-note runs and two 8-bar strains,
    the second also from a one-eighth pickup; the corpus gives no tempo, so a dotted
    quarter = 100 is added.
    """
    score = _parse("oneills1850/0101-0200.abc", number=176)
    _set_instruments(score, [instrument.Violin()])
    first_bar = score.parts[0].getElementsByClass(stream.Measure).first()
    first_bar.insert(0, tempo.MetronomeMark(number=100, referent=duration.Duration(1.5)))
    return _music21_midi(score)


# --- 3. tempo changes ---------------------------------------------------------------------

# (bar, beat offset in quarters, quarter-note BPM): Allegro, then a ritardando into the
# perfect cadence in D that closes the first theme at bar 12.
K155_TEMPI: tuple[tuple[int, float, float], ...] = (
    (1, 0.0, 126.0),
    (11, 0.0, 116.0),
    (11, 2.0, 104.0),
    (12, 0.0, 92.0),
)


def tempo_change() -> bytes:
    """Mozart, String Quartet no. 2 in D, K. 155, i (Allegro), bars 1-12, with a ritardando.

    Two violins, viola and cello; the f/p dynamics become velocities, the double stops
    chords. Both violins have the same program, so music21 puts them on one channel.
    """
    score = _parse("mozart/k155/movement1").measures(1, 12)
    if not isinstance(score, stream.Score):
        raise TypeError("expected a Score excerpt")
    _set_instruments(
        score,
        [instrument.Violin(), instrument.Violin(), instrument.Viola(), instrument.Violoncello()],
    )
    top = score.parts[0]
    for bar, beat, bpm in K155_TEMPI:
        text = "Allegro" if bar == 1 else None
        mark = tempo.MetronomeMark(text=text, number=bpm, referent=duration.Duration(1.0))
        top.measure(bar).insert(beat, mark)
    return _music21_midi(score)


# --- 4. a band arrangement with drums (written with mido) ----------------------------------

PPQ = 480
BAND_BPM = 120
LEAD_PROGRAM = 73  # Flute (GM programs counted from zero)
BASS_PROGRAM = 33  # Electric Bass (finger)
CHORD_PROGRAM = 0  # Acoustic Grand Piano
KICK, SNARE, CLOSED_HAT, CRASH = 36, 38, 42, 49


@dataclass(frozen=True, order=True)
class BandNote:
    """One note in ticks at PPQ."""

    start: int
    duration: int
    pitch: int
    velocity: int


@dataclass(frozen=True)
class ChordKind:
    """A chord of the key: its root and tones as semitones above the tonic."""

    name: str
    root: int
    tones: frozenset[int]
    prior: float  # a small preference for the common chords


# The chords a folk tune in a major key is harmonised with. V7/IV (the tonic with a
# flat seventh) covers the flattened leading note that many fife and fiddle tunes use
# on the way to IV.
MAJOR_KEY_CHORDS: tuple[ChordKind, ...] = (
    ChordKind("I", 0, frozenset({0, 4, 7}), 0.3),
    ChordKind("ii", 2, frozenset({2, 5, 9}), 0.0),
    ChordKind("IV", 5, frozenset({5, 9, 0}), 0.15),
    ChordKind("V", 7, frozenset({7, 11, 2}), 0.2),
    ChordKind("vi", 9, frozenset({9, 0, 4}), 0.0),
    ChordKind("V7/IV", 0, frozenset({0, 4, 7, 10}), -0.2),
)


def _ticks(quarters: Fraction) -> int:
    ticks = quarters * PPQ
    if ticks.denominator != 1 or (ticks.numerator * GRID_PER_QUARTER) % PPQ:
        raise ValueError(f"{quarters} quarters is off the {GRID_PER_QUARTER}-per-quarter grid")
    return ticks.numerator


def _pickup(first: stream.Measure) -> Fraction:
    """The length in quarters of a pickup (anacrusis) bar, 0 for a full first bar."""
    return Fraction(first.quarterLength) if first.paddingLeft else Fraction(0)


def _melody(part: stream.Part) -> list[tuple[Fraction, Fraction, int]]:
    """(onset, duration, MIDI pitch) of each note, in quarters, ties merged."""
    merged = part.stripTies()
    return [
        (
            Fraction(n.getOffsetInHierarchy(merged)),
            Fraction(n.quarterLength),
            n.pitch.midi,
        )
        for n in merged.recurse().getElementsByClass(note.Note)
    ]


def _harmonise(
    melody: Sequence[tuple[Fraction, Fraction, int]],
    tonic: int,
    beats: int,
    beats_per_bar: int,
) -> list[ChordKind]:
    """One chord per beat, by dynamic programming over the melody.

    A chord scores the time that melody notes spend on its tones (notes struck on the
    beat count 1.5 times, other tones count against it). Changing chord costs a little
    at a barline and more inside a bar, so the harmony moves about once a bar. The tune
    starts and ends on I.
    """

    def fit(chord: ChordKind, beat: int) -> float:
        score = chord.prior
        for onset, length, pitch in melody:
            lo, hi = max(onset, Fraction(beat)), min(onset + length, Fraction(beat + 1))
            if hi <= lo:
                continue
            weight = float(hi - lo) * (1.5 if onset == beat else 1.0)
            score += weight if (pitch - tonic) % 12 in chord.tones else -0.5 * weight
        return score

    tonic_chord = MAJOR_KEY_CHORDS[0]
    # best[c] = (score, chord path) of the best harmony of beats 0..b that ends on c
    best = {c: (fit(c, 0) - (0.0 if c == tonic_chord else 5.0), [c]) for c in MAJOR_KEY_CHORDS}
    for beat in range(1, beats):
        change_cost = 0.1 if beat % beats_per_bar == 0 else 0.8
        step = {}
        for chord in MAJOR_KEY_CHORDS:
            score, path = max(
                ((s - (0.0 if prev == chord else change_cost), p) for prev, (s, p) in best.items()),
                key=lambda candidate: candidate[0],  # ties: the first chord of the list
            )
            step[chord] = (score + fit(chord, beat), [*path, chord])
        best = step
    return best[tonic_chord][1]


def _voicing(tones: Iterable[int], previous: tuple[int, ...] | None) -> tuple[int, ...]:
    """A close-position voicing between E3 and about C5, moving least from `previous`."""
    pcs = sorted(set(tones))
    candidates = []
    for inversion in range(len(pcs)):
        order = pcs[inversion:] + pcs[:inversion]
        for bottom in range(52, 64):  # E3 .. D#4
            if bottom % 12 != order[0]:
                continue
            chord = [bottom]
            for pc in order[1:]:
                chord.append(chord[-1] + (pc - chord[-1]) % 12)
            candidates.append(tuple(chord))
    if previous is None:
        return min(candidates, key=lambda c: (abs(sum(c) / len(c) - 60), c))
    prev_mean = sum(previous) / len(previous)
    return min(candidates, key=lambda c: (abs(sum(c) / len(c) - prev_mean), c))


def _bass_pitch(pc: int) -> int:
    """The pitch class `pc` between C2 and B2."""
    return 36 + pc % 12


def _track(name: str, channel: int, program: int, notes: Iterable[BandNote]) -> mido.MidiTrack:
    """A named track: program change at tick 0, then the notes (note-offs first on ties)."""
    events: list[tuple[int, int, int, mido.Message]] = []
    for n in notes:
        on = mido.Message("note_on", channel=channel, note=n.pitch, velocity=n.velocity)
        off = mido.Message("note_off", channel=channel, note=n.pitch, velocity=0)
        events.append((n.start, 1, n.pitch, on))
        events.append((n.start + n.duration, 0, n.pitch, off))
    events.sort(key=lambda e: e[:3])
    track = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name=name, time=0),
            mido.Message("program_change", channel=channel, program=program, time=0),
        ]
    )
    now = 0
    for tick, _, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def band_with_drums() -> bytes:
    """'Yankee Doodle' (American fife book, no. 30), 2/4, D major, arranged for a band.

    Flute lead (the tune, once through, 16 bars), a root-fifth march bass and off-beat
    piano chords from the harmony found by _harmonise, and a GM drum track on channel
    10: kick on 1, snare on 2, closed hi-hat eighths, crashes at the top of each strain,
    a snare fill into the second strain and two closing hits. A tune with a pickup keeps
    it (this one starts on the downbeat): the lead plays it alone, the band enters on the
    first downbeat, where a time signature restating the meter starts the first full bar.
    """
    score = _parse("miscFolk/americanfifeopus.abc", number=30)
    part = score.parts[0]
    time_sig = part.recurse().getElementsByClass(meter.TimeSignature).first()
    key_sig = part.recurse().getElementsByClass(key.KeySignature).first()
    if time_sig is None or key_sig is None:
        raise ValueError("the tune needs a time and a key signature")
    tune_key = key_sig if isinstance(key_sig, key.Key) else key_sig.asKey("major")
    if tune_key.mode != "major" or time_sig.denominator != 4:
        raise ValueError("this arrangement is written for a major key in n/4")
    beats_per_bar = time_sig.numerator
    measures = list(part.getElementsByClass(stream.Measure))
    pickup = _pickup(measures[0])
    bars = len(measures) - (1 if pickup else 0)  # full bars: the band plays these
    beats = bars * beats_per_bar
    # Melody onsets from the first downbeat: a pickup's notes come before beat 0.
    melody = [(onset - pickup, length, pitch) for onset, length, pitch in _melody(part)]
    tonic = tune_key.tonic.pitchClass
    chords = _harmonise(melody, tonic, beats, beats_per_bar)
    last_bar = bars - 1
    fill_bar = bars // 2 - 1  # the bar before the second strain

    # The tune (with its pickup, if any), accented on the downbeat.
    lead = []
    for onset, length, pitch in melody:
        on_beat = onset.denominator == 1
        velocity = 100 if onset % beats_per_bar == 0 else (88 if on_beat else 80)
        lead.append(BandNote(_ticks(onset + pickup), _ticks(length), pitch, velocity))

    bass: list[BandNote] = []
    piano: list[BandNote] = []
    drums: list[BandNote] = []
    voicing: tuple[int, ...] | None = None
    quarter, eighth, sixteenth = PPQ, PPQ // 2, PPQ // 4
    for beat, chord in enumerate(chords):
        bar, in_bar = divmod(beat, beats_per_bar)
        start = _ticks(pickup) + beat * quarter  # the band enters on the first downbeat
        root = _bass_pitch(tonic + chord.root)
        voicing = _voicing(((tonic + t) % 12 for t in chord.tones), voicing)
        if bar == last_bar:  # closing hits on every beat of the last bar
            bass.append(BandNote(start, quarter, root, 100))
            piano.extend(BandNote(start, quarter, p, 92) for p in voicing)
            drums.append(BandNote(start, sixteenth, KICK, 112))
            drums.append(BandNote(start, sixteenth, CRASH if in_bar == 0 else SNARE, 112))
            continue
        # Bass: the root where the chord starts, else the fifth below (march style).
        changed = beat == 0 or chords[beat - 1] != chord
        pitch = root if (in_bar == 0 or changed) else root - 5  # C2..B2 -> G1..F#2
        bass.append(BandNote(start, quarter * 3 // 4, pitch, 96 if in_bar == 0 else 84))
        # Piano: the chord on the off-beat ("oom-pah").
        piano.extend(BandNote(start + eighth, eighth, p, 72) for p in voicing)
        # Drums: kick on 1, snare on the other beats, closed hi-hat eighths; a crash
        # instead of the hi-hat at the top of each strain; a 16th-note snare fill.
        if in_bar == 0:
            drums.append(BandNote(start, sixteenth, KICK, 108))
        if bar == fill_bar and in_bar == beats_per_bar - 1:
            for i, velocity in enumerate((64, 76, 88, 100)):
                drums.append(BandNote(start + i * sixteenth, sixteenth, SNARE, velocity))
            continue
        if in_bar > 0:
            drums.append(BandNote(start, sixteenth, SNARE, 96))
        if in_bar == 0 and bar in (0, fill_bar + 1):  # the top of each strain
            drums.append(BandNote(start, sixteenth, CRASH, 100))
        else:
            drums.append(BandNote(start, sixteenth, CLOSED_HAT, 80))
        drums.append(BandNote(start + eighth, sixteenth, CLOSED_HAT, 60))

    meter_event = mido.MetaMessage(
        "time_signature",
        numerator=time_sig.numerator,
        denominator=time_sig.denominator,
        clocks_per_click=24,
        notated_32nd_notes_per_beat=8,
        time=0,
    )
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("track_name", name="Yankee Doodle", time=0),
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BAND_BPM), time=0),
            meter_event,
            mido.MetaMessage("key_signature", key=tune_key.tonic.name.replace("-", "b"), time=0),
        ]
    )
    if pickup:  # a time signature starts a bar where it stands: the pickup is a short bar
        conductor.append(meter_event.copy(time=_ticks(pickup)))
    conductor.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(type=1, ticks_per_beat=PPQ)
    midi.tracks.extend(
        [
            conductor,
            _track("Flute", 0, LEAD_PROGRAM, sorted(lead)),
            _track("Bass", 1, BASS_PROGRAM, sorted(bass)),
            _track("Piano", 2, CHORD_PROGRAM, sorted(piano)),
            _track("Drums", DRUM_CHANNEL, 0, sorted(drums)),
        ]
    )
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


# --- verification -------------------------------------------------------------------------


def summarize(path: Path) -> str:
    """Read `path` back with mido (and pretty_midi when installed) and describe it.

    Raises ValueError if a note is off the grid.
    """
    midi = mido.MidiFile(path)
    ppq = midi.ticks_per_beat
    step = Fraction(ppq, GRID_PER_QUARTER)
    lines = [f"{path.name}: format {midi.type}, PPQ {ppq}, {len(midi.tracks)} tracks"]
    tempos: list[str] = []
    time_sigs: list[str] = []
    key_sigs: list[str] = []
    for index, track in enumerate(midi.tracks):
        name, programs, channels, notes, tick = "", set(), set(), 0, 0
        for msg in track:
            tick += msg.time
            if msg.type == "track_name":
                name = msg.name
            elif msg.type == "program_change":
                programs.add(msg.program)
            elif msg.type == "set_tempo":
                tempos.append(f"{tick}:{mido.tempo2bpm(msg.tempo):.3f}")
            elif msg.type == "time_signature":
                time_sigs.append(f"{tick}:{msg.numerator}/{msg.denominator}")
            elif msg.type == "key_signature":
                key_sigs.append(f"{tick}:{msg.key}")
            if msg.type in ("note_on", "note_off"):
                channels.add(msg.channel)
                if Fraction(tick) / step % 1:
                    raise ValueError(f"{path.name} track {index}: note at tick {tick} off grid")
                if msg.type == "note_on" and msg.velocity > 0:
                    notes += 1
        lines.append(
            f"  track {index} {name!r}: programs {sorted(programs)}, "
            f"channels {sorted(channels)}, {notes} notes, ends at tick {tick}"
        )
    lines.append(f"  tempos (tick:bpm) {tempos}")
    lines.append(f"  time signatures {time_sigs}; key signatures {key_sigs}")
    lines.append(f"  length {midi.length:.3f} s (mido)")
    if pretty_midi is None:
        lines.append("  pretty_midi not installed: skipped")
        return "\n".join(lines)
    pm = pretty_midi.PrettyMIDI(str(path))
    times, bpms = pm.get_tempo_changes()
    lines.append(
        f"  pretty_midi: end {pm.get_end_time():.3f} s, "
        f"tempos {[f'{t:.3f}s:{b:.3f}' for t, b in zip(times, bpms, strict=True)]}"
    )
    for inst in pm.instruments:
        kind = "drums" if inst.is_drum else f"program {inst.program}"
        lines.append(f"    {inst.name!r}: {kind}, {len(inst.notes)} notes")
    return "\n".join(lines)


def _check(path: Path) -> None:
    """The properties each example exists to exercise."""
    midi = mido.MidiFile(path)
    if path.name == "band_with_drums.mid":
        drum_tracks = [t for t in midi.tracks if t.name == "Drums"]
        channels = {m.channel for t in drum_tracks for m in t if m.type == "note_on"}
        if channels != {DRUM_CHANNEL}:
            raise ValueError(f"drums on channels {channels}, expected {{{DRUM_CHANNEL}}}")
    if path.name == "tempo_change.mid":
        bpms = {m.tempo for t in midi.tracks for m in t if m.type == "set_tempo"}
        if len(bpms) < 3:
            raise ValueError(f"expected at least 3 distinct tempi, got {len(bpms)}")


EXAMPLES = {
    "bach_chorale.mid": bach_chorale,
    "folk_tune.mid": folk_tune,
    "tempo_change.mid": tempo_change,
    "band_with_drums.mid": band_with_drums,
}


def main() -> None:
    for name, build in EXAMPLES.items():
        path = OUT_DIR / name
        path.write_bytes(build())
        _check(path)
        print(summarize(path))


if __name__ == "__main__":
    main()
