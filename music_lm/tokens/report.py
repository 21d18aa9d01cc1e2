"""Human-readable summaries of a MIDI file and of what the codec's round trip does to it."""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from music_lm.midi.gm import GM_DRUMS, pitch_to_name
from music_lm.midi.read import read_midi
from music_lm.midi.score import Score
from music_lm.midi.write import write_midi
from music_lm.tokens.codec import decode, encode, to_grid
from music_lm.tokens.encoded import Encoded
from music_lm.tokens.vocab import GRID_PER_QUARTER


@dataclass(frozen=True)
class RoundTripCheck:
    """Result of actually running text -> MIDI -> text and comparing."""

    text_identical: bool
    notes_expected: int
    midi: bytes  # the MIDI file the text decodes to (what a round trip writes)
    notes_back: int  # notes read back equal to the grid score's notes
    meta_identical: bool

    @property
    def ok(self) -> bool:
        return (
            self.text_identical and self.meta_identical and self.notes_back == self.notes_expected
        )


def verify_round_trip(encoded: Encoded) -> RoundTripCheck:
    """Decode the text, write MIDI, read it back and compare with the grid score."""
    score = decode(encoded.text)
    midi = write_midi(score)
    back_read = read_midi(midi, name="<round trip>")
    back, _ = to_grid(back_read.score)
    expected = encoded.grid
    notes_back = 0
    for mine, theirs in zip(expected.tracks, back.tracks, strict=False):
        same_instrument = (mine.program, mine.is_drum) == (theirs.program, theirs.is_drum)
        if same_instrument:
            notes_back += _multiset_overlap(mine.notes, theirs.notes)
    meta_identical = (
        expected.tempos == back.tempos
        and expected.time_signatures == back.time_signatures
        and expected.key_signatures == back.key_signatures
    )
    return RoundTripCheck(
        text_identical=encode(back) == encoded.text,
        notes_expected=expected.note_count,
        midi=midi,
        notes_back=notes_back,
        meta_identical=meta_identical,
    )


def _multiset_overlap(a: list, b: list) -> int:
    return sum((Counter(a) & Counter(b)).values())


# ---- positions and lengths ----


def _position_text(score: Score, bar_starts: list[int], tick: int) -> str:
    bar = bisect.bisect_right(bar_starts, tick) - 1
    beat = (tick - bar_starts[bar]) / score.ticks_per_beat
    return f"bar {bar + 1}" if beat == 0 else f"bar {bar + 1} + {beat:g} quarter notes"


def seconds(score: Score, tick: int) -> float:
    """Seconds from the start to `tick`, following the tempo map (120 BPM before any)."""
    total, last_tick, bpm = 0.0, 0, 120.0
    for change in sorted(score.tempos, key=lambda t: t.tick):
        if change.tick >= tick:
            break
        total += (change.tick - last_tick) / score.ticks_per_beat * 60.0 / bpm
        last_tick, bpm = change.tick, change.bpm
    return total + (tick - last_tick) / score.ticks_per_beat * 60.0 / bpm


def short_bars(score: Score, bar_starts: list[int]) -> list[tuple[int, float, float]]:
    """(bar number, length, length under its meter) in quarter notes of each bar that a time
    signature cuts short: a pickup, or a bar where the meter changes before it is full. The
    last bar is never short: a MIDI file does not say where its last bar ends."""
    signatures = sorted(score.time_signatures, key=lambda ts: ts.tick)
    ticks = [ts.tick for ts in signatures]
    ppq = score.ticks_per_beat
    out = []
    for number, (start, stop) in enumerate(itertools.pairwise(bar_starts), start=1):
        index = bisect.bisect_right(ticks, start) - 1
        meter = signatures[index] if index >= 0 else None
        full = 4 * ppq if meter is None else meter.numerator * 4 * ppq // meter.denominator
        if stop - start < full:
            out.append((number, (stop - start) / ppq, full / ppq))
    return out


def doubled_notes(score: Score) -> list[tuple[int, int, int]]:
    """(track number, onset tick, pitch) of each pitch that a track starts more than once at
    one onset (a unison: the text keeps it, generation never writes one by default)."""
    out = []
    for number, track in enumerate(score.tracks, start=1):
        starts = Counter((n.onset_tick, n.pitch) for n in track.notes)
        out += [(number, tick, pitch) for (tick, pitch), count in sorted(starts.items())
                if count > 1]  # fmt: skip
    return out


def _quarters(value: float) -> str:
    """2.5 -> '2 1/2', 0.5 -> '1/2', 3.0 -> '3'."""
    fraction = Fraction(value).limit_denominator(1 << 16)
    whole, part = divmod(fraction, 1)
    if not part:
        return str(whole)
    return f"{whole} {part}" if whole else str(part)


def _clock(secs: float) -> str:
    minutes, rest = divmod(secs, 60)
    return f"{int(minutes)}:{rest:04.1f}"


def format_summary(encoded: Encoded) -> list[str]:
    read, score = encoded.read, encoded.read.score
    end = score.end_tick
    # A note ending on a bar line does not start the next bar.
    bar_starts = score.bar_starts(max(end - 1, 0))
    lines = [
        f"{read.source_name}: MIDI format {read.midi_format}, {score.ticks_per_beat} ticks per "
        f"quarter note, {read.midi_track_count} MIDI tracks",
        f"  length: {len(bar_starts)} bars, {_clock(seconds(score, end))}",
        f"  instruments: {len(score.tracks)}, notes: {score.note_count}",
    ]
    for index, track in enumerate(score.tracks, start=1):
        channel = "" if track.channel is None else f", channel {track.channel + 1}"
        display = track.instrument_name.replace("-", " ").title()
        kind = "Drums" if track.is_drum else f"{display} (program {track.program})"
        name = f' "{track.name}"' if track.name else ""
        lines.append(f"    {index:>2}. {kind}{channel}{name}: {len(track.notes)} notes")
    tempos = [
        f"{t.bpm:.2f} BPM at {_position_text(score, bar_starts, t.tick)}" for t in score.tempos
    ]
    lines.append("  tempo map: " + ("; ".join(tempos) if tempos else "none (120 BPM)"))
    signatures = [
        f"{t} at {_position_text(score, bar_starts, t.tick)}" for t in score.time_signatures
    ]
    lines.append("  time signatures: " + ("; ".join(signatures) if signatures else "none (4/4)"))
    short = short_bars(score, bar_starts)
    if short:
        described = [
            f"bar {bar} ({_quarters(length)} of {_quarters(full)} quarter notes"
            f"{', a pickup' if bar == 1 else ''})"
            for bar, length, full in short
        ]
        shown = "; ".join(described[:8]) + ("; ..." if len(described) > 8 else "")
        lines.append(
            f"  short bars: {len(short)} (ended by the time signature that starts the next "
            f"bar): {shown}"
        )
    keys = [f"{k} at {_position_text(score, bar_starts, k.tick)}" for k in score.key_signatures]
    lines.append("  key signatures: " + ("; ".join(keys) if keys else "none"))
    doubled = doubled_notes(score)
    if doubled:
        described = [
            f"track {track} {_note_name(score, track, pitch)} at "
            f"{_position_text(score, bar_starts, tick)}"
            for track, tick, pitch in doubled[:5]
        ]
        more = "; ..." if len(doubled) > 5 else ""
        lines.append(
            f"  doubled notes: {len(doubled)} (a pitch started twice at once on one track): "
            + "; ".join(described)
            + more
        )
    return lines


def _note_name(score: Score, track: int, pitch: int) -> str:
    if score.tracks[track - 1].is_drum:
        return GM_DRUMS.get(pitch, f"drum key {pitch}")
    return pitch_to_name(pitch)


def format_report(encoded: Encoded, check: RoundTripCheck | None = None) -> list[str]:
    c = encoded.changes
    grid = f"1/{GRID_PER_QUARTER} of a quarter note"
    lines = [f"round trip (grid: {grid}):"]
    score = encoded.read.score
    ts_total, key_total = len(score.time_signatures), len(score.key_signatures)
    ts_moved = c.meta_moved["time signatures"] + sum(
        n for kind, n in c.dropped.items() if kind.startswith("time signature")
    )
    lines.append(
        f"  kept exactly: {c.notes_exact} of {c.notes} notes (pitch, onset, duration, "
        "velocity bin, instrument, drums)"
    )
    lines.append(
        f"  kept exactly: {c.tempos_exact} of {c.tempos} tempo events (BPM within "
        f"{c.max_tempo_error_percent:.2f} %), {ts_total - ts_moved} of {ts_total} time and "
        f"{key_total - c.meta_moved['key signatures']} of {key_total} key signatures, "
        "at their positions"
    )
    moved = c.notes - c.notes_exact
    if moved:
        lines.append(
            f"  moved to the grid: {moved} notes: {c.onsets_moved} onsets (largest shift "
            f"{c.max_onset_shift_quarters:.3f} quarter notes), {c.durations_changed} durations "
            f"(largest change {c.max_duration_shift_quarters:.3f} quarter notes)"
        )
    else:
        lines.append("  moved to the grid: nothing")
    for kind, count in sorted(c.meta_moved.items()):
        lines.append(f"  moved to the grid: {count} {kind}")
    if c.velocities_binned:
        lines.append(
            f"  velocity binned: {c.velocities_binned} notes to their bin's value (largest change "
            f"{c.max_velocity_change})"
        )
    for kind, count in sorted(c.changed.items()):
        lines.append(f"  changed: {count} {kind}")
    for kind, count in sorted(c.remarks.items()):
        lines.append(f"  while reading: {count} {kind}")
    if c.same_pitch_overlaps:
        lines.append(
            f"  same-pitch overlaps: {c.same_pitch_overlaps} notes start while their pitch still "
            "sounds on their track (kept, paired first-in first-out; pretty_midi ends them at "
            "the first note-off)"
        )
    if c.dropped:
        dropped = ", ".join(f"{kind} {count}" for kind, count in sorted(c.dropped.items()))
        lines.append(f"  dropped: {dropped}")
    else:
        lines.append("  dropped: nothing")
    tokens = encoded.token_count
    per_note = tokens / c.notes if c.notes else 0.0
    lines.append(f"  token text: {tokens} tokens ({per_note:.2f} per note)")
    if check is not None:
        verdict = "verified" if check.ok else "FAILED"
        lines.append(
            f"  round trip {verdict}: {check.notes_back} of {check.notes_expected} notes back "
            f"as encoded; tempo/meter/key {'identical' if check.meta_identical else 'DIFFER'}; "
            f"text {'identical' if check.text_identical else 'DIFFERS'} after text -> MIDI -> text"
        )
    return lines


def format_inspection(encoded: Encoded, check: RoundTripCheck | None = None) -> str:
    return "\n".join([*format_summary(encoded), *format_report(encoded, check)])
