"""Inputs that once crashed or hung the parsers, each refused now with our own error.

Each test names the input that broke the code, what happened, and what happens now.
The fuzzer's own crash files are kept in tests/fuzz_crashes/<target>/ and replayed
through the fuzz targets, which also check the round trip of whatever still encodes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fuzz import midi_target, text_target
from fuzz.seeds import meta, note, smf, varlen
from music_lm import CodecError, MidiError, read_midi
from music_lm.api import inspect_midi
from music_lm.midi.score import Score, TimeSignature
from music_lm.tokens.encoded import encode_midi

CRASHES = Path(__file__).resolve().parent / "fuzz_crashes"
CHECKS = {"midi": midi_target.check, "text": text_target.check}
CRASH_FILES = sorted(p for folder in CRASHES.iterdir() for p in folder.iterdir())


@pytest.mark.parametrize("path", CRASH_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_input_the_fuzzer_crashed_on_is_now_handled(path: Path) -> None:
    CHECKS[path.parent.name](path.read_bytes())


def test_a_program_change_above_127_is_refused_naming_it() -> None:
    # Fuzzer, MIDI target: seventeen instruments, one of them set to program 255 by a
    # program change whose data byte was a status byte (0xC5 0xFF). Merging tracks to fit
    # MIDI's sixteen channels named the program and raised IndexError from GM_PROGRAMS.
    sixteen = [b"\x00" + bytes((0xC0 | ch, 7 * ch)) + note(0, 24, 40 + ch, ch=ch) for ch in
               range(16)]  # fmt: skip
    seventeenth = b"\x00\xc5\xff" + note(0, 24, 45, ch=5)  # the smallest, so merged first
    refused = r"<bytes>: program change to 255 \(not 0\.\.127\) in track 17"
    with pytest.raises(MidiError, match=refused):
        encode_midi(smf(*sixteen, seventeenth))


def test_a_program_change_above_127_with_a_track_name_is_not_called_truncated() -> None:
    # Found reading the reader: with a track name, naming the instrument raised IndexError
    # inside the track loop, which reported it as "truncated MIDI file".
    named = meta(0, 0x03, b"Lead") + b"\x00\xc0\xc8" + note(0, 96)
    with pytest.raises(MidiError, match=r"named.mid: program change to 200 .* track 1"):
        read_midi(smf(named), name="named.mid")


def test_a_delta_time_of_thousands_of_bytes_is_a_clear_error_not_an_unprintable_number() -> None:
    # Found writing the seeds: 3,000 bytes of 0xFF read as one delta time gave a number of
    # 6,300 digits, and printing it in the message raised Python's ValueError (integer
    # string conversion limit) instead of MidiError.
    endless = smf(b"\xff" * 3_000 + b"\x00\x90\x3c\x40")
    with pytest.raises(MidiError, match=r"<bytes>: malformed delta time \(more than 268435455"):
        read_midi(endless)


def test_a_piece_with_millions_of_tiny_bars_reports_in_a_moment() -> None:
    # Found writing the fuzz targets (the MIDI target runs the report too): a 129-byte
    # file in 1/64 at 32,767 ticks per quarter note, with a note 99,000 quarter notes in,
    # has 1.6 million bars; counting them a bar at a time took half a second (two under
    # the fuzzer's instrumentation, over its one-second limit).
    far, deltas = 99_000 * 32_767, b""
    while far > 0x0FFFFFFF:
        deltas += varlen(0x0FFFFFFF) + b"\xff\x01\x00"
        far -= 0x0FFFFFFF
    tiny_bars = meta(0, 0x58, bytes((1, 6, 24, 8))) + deltas + note(far, 96)
    data = smf(tiny_bars, division=32_767)
    score = read_midi(data).score
    # Work counted, not timed (a busy machine slows any clock): the Python lines that
    # bar_starts runs. A meter's bars at once take a few lines per time signature; a bar
    # at a time took at least three lines per bar, millions here.
    bars, lines = _lines_run(score.bar_starts, limit=LINES_PER_CALL)
    assert len(bars) == 1_584_726
    assert lines <= LINES_PER_CALL
    assert "length: 1584726 bars" in inspect_midi(data)


LINES_PER_CALL = 100  # of score.py, for a piece of one time signature


def _lines_run(function: Callable[[], list[int]], limit: int) -> tuple[list[int], int]:
    """(what `function` returns, the lines of music_lm/midi/score.py it ran); stops with an
    AssertionError past `limit` lines, so a regression fails at once."""
    count = 0

    def tracer(frame, event, _arg):
        nonlocal count
        if not frame.f_code.co_filename.endswith(f"music_lm{os.sep}score.py"):
            return None  # other files run untraced
        if event == "line":
            count += 1
            assert count <= limit, f"more than {limit} lines of score.py"
        return tracer

    sys.settrace(tracer)
    try:
        value = function()
    finally:
        sys.settrace(None)
    return value, count


def test_bar_starts_follow_each_meter_and_restart_at_a_signature_inside_a_bar() -> None:
    # The same bars as before bar_starts took one meter at a time.
    score = Score(4, time_signatures=[TimeSignature(0, 3, 4), TimeSignature(20, 2, 4)])
    assert score.bar_starts(40) == [0, 12, 20, 28, 36]
    assert Score(4).bar_starts(-1) == [0]
    assert Score(1, time_signatures=[TimeSignature(0, 1, 64)]).bar_starts(3) == [0, 1, 2, 3]


def test_a_piece_of_more_bars_than_the_codec_takes_is_refused_naming_the_count() -> None:
    # Fuzzer, MIDI target: a 2,277-byte file in 2/4 with a note 79,000 quarter notes in
    # encoded to 39,521 mostly empty bars; checking its round trip took 2 s (the limit in
    # quarter notes let it through). In 1/32 a 45-byte file made 800,000 bars, 3 MB of text.
    one_note_far_away = note(79_000 * 96 - 96, 96)
    refused = r"far.mid: the piece lasts 39,500 bars \(of 2/4\); at most 25,000 are supported"
    with pytest.raises(CodecError, match=refused):
        encode_midi(smf(meta(0, 0x58, bytes((2, 2, 24, 8))) + one_note_far_away), name="far.mid")
    in_4_4 = encode_midi(smf(note(24_999 * 4 * 96, 96)))  # the same length in 4/4 is taken
    assert in_4_4.text.split().count("bar") == 25_000


def test_a_piece_longer_than_the_codec_takes_is_still_refused_by_length() -> None:
    # The five-byte delta above is refused by the reader; a legal one that lands far away
    # is the codec's to refuse (the length limit stays where it was).
    with pytest.raises(CodecError, match="the piece lasts"):
        encode_midi(smf(note(0x0FFFFFFF, 1)))
