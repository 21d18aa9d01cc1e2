"""The sustain pedal (CC64) applied to notes read from a file: a note released while the
pedal is down sounds on until the pedal lifts or its key is struck again, as on a piano.
"""

from __future__ import annotations

import bisect

from music_lm.midi.score import Note, Track


def sustain_notes(
    instruments: dict[tuple[int, int, int], Track],
    pedal: dict[int, list[tuple[int, bool]]],
    end_tick: int,
) -> int:
    """Apply each channel's sustain pedal to every instrument on that channel, from any
    track: a synthesizer knows channels, not tracks. Returns how many notes got longer."""
    lengthened = 0
    for (_, channel, _), track in instruments.items():
        if channel in pedal:
            events = sorted(pedal[channel], key=lambda e: e[0])  # stable: file order per tick
            lengthened += _apply_sustain(track.notes, _pedal_down_spans(events, end_tick))
    return lengthened


def _pedal_down_spans(events: list[tuple[int, bool]], end_tick: int) -> list[tuple[int, int]]:
    """[down, up) tick spans of a sustain pedal from its CC64 events (in order); a pedal
    never lifted holds to the end of the track."""
    spans, down_at = [], None
    for tick, down in events:
        if down and down_at is None:
            down_at = tick
        elif not down and down_at is not None:
            if tick > down_at:
                spans.append((down_at, tick))
            down_at = None
    if down_at is not None and end_tick > down_at:
        spans.append((down_at, end_tick))
    return spans


def _apply_sustain(notes: list[Note], spans: list[tuple[int, int]]) -> int:
    """Hold each note released inside a pedal-down span until the pedal lifts, or until
    its key is struck again (in place). Returns how many notes got longer."""
    if not spans:
        return 0
    downs = [down for down, _ in spans]
    order = sorted(range(len(notes)), key=lambda k: notes[k].onset_tick)
    next_strike: dict[int, int] = {}  # pitch -> onset of the next note of that pitch
    restrike = [0] * len(notes)
    for k in reversed(order):
        restrike[k] = next_strike.get(notes[k].pitch, 1 << 62)
        next_strike[notes[k].pitch] = notes[k].onset_tick
    lengthened = 0
    for k, (onset, duration, pitch, velocity) in enumerate(notes):
        release = onset + duration
        span = bisect.bisect_right(downs, release) - 1
        if span < 0 or release >= spans[span][1]:
            continue  # released with the pedal up
        end = min(spans[span][1], restrike[k])
        if end > release:
            notes[k] = Note(onset, end - onset, pitch, velocity)
            lengthened += 1
    return lengthened
