"""`Score` -> Standard MIDI File bytes, DAW-ready; also the names and texts our files carry.

Writing is DAW-ready: format 1, PPQ 480, track 0 holds the tempo map and the
time and key signatures, then one named track per instrument on its own
channel with its program change at tick 0, drums on channel 10, note-offs
before note-ons on the same tick.

The byte-level writer is our own: building a mido message object per event made
writing 10x slower than the codec's throughput goal allows (bench/RESULTS.md).
The reader (`music_lm.midi.read`) knows the names written here, so reading our own
files back loses nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

from music_lm.midi.gm import DRUM_CHANNEL, GM_PROGRAMS, MAX_TRACKS
from music_lm.midi.score import Score, Track, default_channel_layout

DAW_TICKS_PER_BEAT = 480
STYLE_TEXT_PREFIX = "music_lm style:"
CONDUCTOR_NAME = "music_lm"  # the name of track 0 in written files


def track_display_names(tracks: list[Track]) -> list[str]:
    """'Acoustic Grand Piano', 'Drums', with ' 2', ' 3' for repeated instruments."""
    names, seen = [], Counter()
    for track in tracks:
        base = "Drums" if track.is_drum else _display_name(track.program)
        seen[base] += 1
        names.append(base if seen[base] == 1 else f"{base} {seen[base]}")
    return names


def names_we_write(instruments: Collection[tuple[int, int]]) -> set[str]:
    """Names the writer gives a track holding these (channel, program) instruments: reading
    them back loses nothing ("music_lm" for the conductor track, else the instrument's name)."""
    if not instruments:
        return {CONDUCTOR_NAME}
    names = set()
    for channel, program in instruments:
        base = "Drums" if channel == DRUM_CHANNEL else _display_name(program)
        names |= {base, *(f"{base} {n}" for n in range(2, MAX_TRACKS + 1))}
    return names


def _display_name(program: int) -> str:
    return GM_PROGRAMS[program].replace("-", " ").title()


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _meta(meta_type: int, payload: bytes) -> bytes:
    return bytes((0xFF, meta_type)) + _varlen(len(payload)) + payload


_VARLEN_SMALL = [_varlen(value) for value in range(1 << 14)]  # one or two bytes


def _chunk(events: list[tuple[int, bytes]]) -> bytes:
    """An MTrk chunk of (absolute tick, message bytes), in order, ended by end-of-track."""
    parts = []
    last = 0
    small = _VARLEN_SMALL
    for tick, message in events:
        delta = tick - last
        parts.append(small[delta] if delta < 16384 else _varlen(delta))
        parts.append(message)
        last = tick
    parts.append(b"\x00\xff\x2f\x00")
    body = b"".join(parts)
    return b"MTrk" + len(body).to_bytes(4, "big") + body


def write_midi(
    score: Score,
    ticks_per_beat: int = DAW_TICKS_PER_BEAT,
    markers: Sequence[tuple[int, str]] = (),
    texts: Sequence[str] = (),
    midi_format: int = 1,
) -> bytes:
    """A DAW-ready Standard MIDI File (format 1) of `score`, as bytes; `midi_format=0` puts
    the same events in one track, for tools that want a single track (each instrument
    keeps its channel and program change).

    `markers` are (tick in the score's resolution, name) marker events and `texts` text
    events at tick 0, both in the conductor track (a generator marks where its
    continuation starts and records its settings there)."""
    source_ppq = score.ticks_per_beat

    def at(tick: int) -> int:
        return tick * ticks_per_beat // source_ppq

    conductor: list[tuple[int, int, bytes]] = []  # (tick, order on a tick, message)
    for ts in score.time_signatures:
        power = ts.denominator.bit_length() - 1
        # A metronome click every quarter note (24 MIDI clocks), eight 32nds per quarter.
        conductor.append((at(ts.tick), 0, _meta(0x58, bytes((ts.numerator, power, 24, 8)))))
    for ks in score.key_signatures:
        payload = bytes((ks.sharps & 0xFF, 1 if ks.mode == "minor" else 0))
        conductor.append((at(ks.tick), 1, _meta(0x59, payload)))
    for tempo in score.tempos:
        microseconds = round(60_000_000 / tempo.bpm)
        conductor.append((at(tempo.tick), 2, _meta(0x51, microseconds.to_bytes(3, "big"))))
    for tick, name in markers:
        conductor.append((at(tick), 3, _meta(0x06, name.encode("utf-8"))))
    conductor.sort(key=lambda e: (e[0], e[1]))
    head = [(0, _meta(0x03, CONDUCTOR_NAME.encode("latin-1")))]
    if score.style != "none":
        head.append((0, _meta(0x01, f"{STYLE_TEXT_PREFIX}{score.style}".encode("latin-1"))))
    head += [(0, _meta(0x01, text.encode("utf-8"))) for text in texts]
    tracks = [head + [(tick, message) for tick, _, message in conductor]]

    names = track_display_names(score.tracks)
    channels = default_channel_layout(score.tracks)
    for track, channel, name in zip(score.tracks, channels, names, strict=True):
        # Sort key: tick, note-offs first, then note-ons of one pitch in the order
        # they end, so first-in first-out pairing reads them back as written.
        events: list[tuple[int, int, int, int, bytes]] = []
        note_on, note_off = 0x90 | channel, 0x80 | channel
        offs = [bytes((note_off, pitch, 64)) for pitch in range(128)]
        for onset, duration, pitch, velocity in track.notes:
            on, off = at(onset), at(onset + duration)
            events.append((on, 1, off, pitch, bytes((note_on, pitch, velocity))))
            events.append((off, 0, 0, pitch, offs[pitch]))
        events.sort()  # ties (doubled notes) fall to the message bytes: still deterministic
        body = [
            (0, _meta(0x03, name.encode("latin-1"))),
            (0, bytes((0xC0 | channel, track.program))),
        ]
        tracks.append(body + [(e[0], e[4]) for e in events])
    if midi_format == 0:
        # One track: the conductor's events first on a tick, then each instrument's in
        # order (a stable sort keeps note-offs before note-ons); the first name names it.
        merged = [
            (tick, index, message)
            for index, events in enumerate(tracks)
            for tick, message in events
            if index == 0 or message[:2] != b"\xff\x03"
        ]
        merged.sort(key=lambda e: (e[0], e[1]))
        tracks = [[(tick, message) for tick, _, message in merged]]
    elif midi_format != 1:
        raise ValueError(f"midi_format must be 0 or 1, got {midi_format}")
    chunks = [_chunk(events) for events in tracks]
    header = b"MThd" + (6).to_bytes(4, "big") + midi_format.to_bytes(2, "big")
    header += len(chunks).to_bytes(2, "big") + ticks_per_beat.to_bytes(2, "big")
    return header + b"".join(chunks)
