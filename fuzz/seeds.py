"""Seed corpora for the fuzz targets: `python fuzz/seeds.py OUT` writes OUT/midi and OUT/text.

A fuzzer mutates what it is given, so the seeds cover the shapes the parsers must take
or refuse: the example files, small hand-made files for every corner of the MIDI format
(format 0/1/2, SMPTE timing, running status, sysex, meta events, cut-short chunks, huge
delta times, a note at tick 2**31), and token texts that are valid, cut short or mutated,
plus grammar-guided inputs for the text target's structure-aware mode.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root makes `fuzz` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.text_target import WALK_MODE, WORDS_MODE
from music_lm.midi.score import KeySignature, Note, Score, TempoChange, TimeSignature, Track
from music_lm.midi.write import write_midi
from music_lm.tokens.codec import encode
from music_lm.tokens.encoded import encode_midi
from music_lm.tokens.vocab import VOCAB

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "midi_in").glob("*.mid"))

# ---- MIDI bytes, written by hand so that malformed files can be written too ----

END_OF_TRACK = b"\x00\xff\x2f\x00"


def header(fmt: int = 1, tracks: int = 1, division: int = 96, length: int = 6) -> bytes:
    """An MThd chunk; `length` above 6 pads it with zeros, as some writers do."""
    body = fmt.to_bytes(2, "big") + tracks.to_bytes(2, "big") + division.to_bytes(2, "big")
    return b"MThd" + length.to_bytes(4, "big") + body + bytes(max(length - 6, 0))


def track(body: bytes, end: bool = True, chunk_id: bytes = b"MTrk") -> bytes:
    """A track chunk holding `body` (delta-timed events), closed by end-of-track."""
    body = body + END_OF_TRACK if end else body
    return chunk_id + len(body).to_bytes(4, "big") + body


def varlen(value: int) -> bytes:
    """MIDI's variable-length quantity (seven bits a byte, high bit = more follow)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def meta(delta: int, meta_type: int, payload: bytes) -> bytes:
    return varlen(delta) + bytes((0xFF, meta_type)) + varlen(len(payload)) + payload


def note(onset_delta: int, length: int, pitch: int = 60, velocity: int = 80, ch: int = 0) -> bytes:
    """A note-on after `onset_delta` ticks and its note-off `length` ticks later."""
    on = varlen(onset_delta) + bytes((0x90 | ch, pitch, velocity))
    return on + varlen(length) + bytes((0x80 | ch, pitch, 0))


def smf(*bodies: bytes, fmt: int = 1, division: int = 96) -> bytes:
    return header(fmt, len(bodies), division) + b"".join(track(body) for body in bodies)


CONDUCTOR = (
    meta(0, 0x03, b"conductor")
    + meta(0, 0x51, (500_000).to_bytes(3, "big"))
    + meta(0, 0x58, bytes((3, 2, 24, 8)))
    + meta(0, 0x59, bytes((0xFE, 1)))
)
MELODY = b"\x00\xc0\x28" + note(0, 48) + note(0, 48, 62) + note(0, 96, 64)


def hand_made_midi() -> dict[str, bytes]:
    """Small files, each for one feature or one way of being broken."""
    running_status = b"\x00\x90\x3c\x40" + b"\x30\x3c\x00" + b"\x00\x3e\x40" + b"\x30\x3e\x00"
    sysex = b"\x00\xf0\x05\x7e\x7f\x09\x01\xf7" + b"\x00\xf7\x02\xf3\x01"
    all_meta = b"".join(
        meta(0, meta_type, payload)
        for meta_type, payload in (
            (0x00, b"\x00\x01"),
            (0x01, b"music_lm style:bach"),
            (0x01, b"just a text"),
            (0x02, b"(c) nobody"),
            (0x04, b"Piano"),
            (0x05, b"la"),
            (0x06, b"verse"),
            (0x07, b"cue"),
            (0x20, b"\x00"),
            (0x21, b"\x00"),
            (0x54, b"\x60\x00\x00\x00\x00"),
            (0x7F, b"\x00\x00\x41"),
            (0x51, b"\x00\x00"),  # a tempo cut short
            (0x51, b"\x00\x00\x00"),  # a tempo of zero microseconds
            (0x58, b"\x00\x02\x18\x08"),  # a time signature of 0 beats
            (0x59, b"\x09\x00"),  # nine sharps
            (0x33, b"unknown"),
        )
    )
    channel_messages = (
        b"\x00\xb0\x40\x7f"  # sustain pedal down
        + b"\x00\xb0\x07\x64"
        + b"\x00\xe0\x00\x40"  # pitch bend at the centre
        + b"\x00\xe0\x10\x50"
        + b"\x00\xa0\x3c\x20"
        + b"\x00\xd0\x20"
        + note(0, 96)
        + b"\x10\xb0\x40\x00"  # pedal up
        + b"\x00\xf6\x00\xf8\x00\xf2\x01\x02"  # system common and real-time bytes
    )
    drums = b"\x00\xc9\x05" + note(0, 12, 36, 100, ch=9) + note(12, 12, 38, 90, ch=9)
    off_before_on = b"\x00\x80\x3c\x00\x00\x90\x3c\x40" + b"\x60\x80\x3c\x00\x00\x80\x3c\x00"
    # 2**31 ticks as eight deltas of 2**28 - 1 ticks, then the rest.
    max_delta = varlen(0x0FFFFFFF)
    to_2_31 = b"".join(max_delta + b"\xff\x01\x00" for _ in range(8)) + varlen(8)
    many_tracks = [b"\x00" + bytes((0xC0 | ch, ch * 7)) + note(0, 24, 60 + ch, ch=ch) for ch in
                   range(16)]  # fmt: skip
    many_tracks.append(b"\x00\xc0\x49" + note(0, 24, 40))  # a 17th instrument
    return {
        "format0": smf(CONDUCTOR + MELODY, fmt=0),
        "format1": smf(CONDUCTOR, MELODY, b"\x00\xc1\x21" + note(0, 192, 36, ch=1)),
        "format2": smf(MELODY, MELODY, fmt=2),
        "smpte_division": smf(MELODY, division=0xE728),
        "division_zero": smf(MELODY, division=0),
        "division_max": smf(MELODY, division=0x7FFF),
        "division_one": smf(MELODY + note(1, 1, 61), division=1),
        "running_status": smf(running_status),
        "data_byte_first": smf(b"\x00\x3c\x40"),
        "sysex": smf(sysex + MELODY),
        "meta_events": smf(all_meta + MELODY),
        "channel_messages": smf(channel_messages),
        "drums": smf(drums),
        "off_before_on": smf(off_before_on),
        "never_released": smf(b"\x00\x90\x3c\x40\x60\x90\x3e\x40"),
        "long_header": header(1, 1, 96, length=10) + track(MELODY),
        "short_header": b"MThd\x00\x00\x00\x06\x00\x01",
        "header_only": header(1, 0),
        "missing_tracks": header(1, 3) + track(MELODY),
        "unknown_chunk": header(1, 1) + track(b"junk", end=False, chunk_id=b"XFIH") + track(MELODY),
        "chunk_cut_short": header(1, 1) + track(MELODY)[:-5],
        "chunk_length_too_long": header(1, 1) + b"MTrk\x00\x00\x10\x00" + MELODY,
        "event_cut_short": header(1, 1) + track(b"\x00\x90\x3c", end=False),
        "meta_cut_short": header(1, 1) + track(b"\x00\xff\x01\x7f\x41", end=False),
        "huge_delta": smf(b"\x00\x90\x3c\x40" + max_delta + b"\x80\x3c\x00"),
        "five_byte_delta": smf(b"\x00\x90\x3c\x40" + b"\x8f\xff\xff\xff\x7f\x80\x3c\x00"),
        "note_at_2_31": smf(to_2_31 + b"\x90\x3c\x40\x60\x80\x3c\x00"),
        "many_tracks": smf(*many_tracks),
        "pitch_out_of_range": smf(b"\x00\x90\x3c\x40\x00\x80\x3c\x00\x00\x90"),
        "empty": b"",
        "not_midi": b"RIFF\x00\x00\x00\x04WAVE",
    }


def example_midi() -> dict[str, bytes]:
    """The example files, and each written back in format 0 and 1 by our writer."""
    out = {}
    for path in EXAMPLES:
        data = path.read_bytes()
        out[path.stem] = data
        grid = encode_midi(data, name=path.name).grid
        out[f"{path.stem}_written_format0"] = write_midi(grid, midi_format=0)
        out[f"{path.stem}_written_format1"] = write_midi(grid, ticks_per_beat=96)
    return out


def midi_seeds() -> dict[str, bytes]:
    return {**example_midi(), **hand_made_midi()}


# ---- token texts ----


def _score(*tracks: Track, **meta_events: list) -> Score:
    return Score(24, tracks=list(tracks), **meta_events)


def hand_made_scores() -> dict[str, Score]:
    """Grid scores whose texts reach the grammar's rarer rules: long durations, meter,
    tempo and key changes, drums, chords, doubled notes, overlaps and every track."""
    chord = [Note(0, 96, p, 80) for p in (60, 64, 67, 67)] + [Note(96, 24, 72, 127)]
    long_notes = [Note(0, 24_576, 48, 64), Note(96, 481, 60, 40), Note(192, 97, 62, 40)]
    overlap = [Note(0, 96, 60, 64), Note(48, 96, 60, 64), Note(72, 24, 62, 64)]
    drums = Track(0, is_drum=True, notes=[Note(t, 6, 36 + t % 5, 100) for t in range(0, 192, 12)])
    return {
        "chord": _score(Track(0, notes=chord)),
        "long_notes": _score(Track(42, notes=long_notes)),
        "overlap": _score(Track(40, notes=overlap)),
        "drums_and_bass": _score(Track(33, notes=[Note(0, 192, 36, 96)]), drums),
        "meta_changes": _score(
            Track(0, notes=[Note(t, 24, 60 + t // 24 % 12, 64) for t in range(0, 1440, 24)]),
            tempos=[TempoChange(0, 96.0), TempoChange(96, 20.0), TempoChange(400, 400.0)],
            time_signatures=[TimeSignature(0, 6, 8), TimeSignature(288, 12, 4)],
            key_signatures=[KeySignature(0, -7, "major"), KeySignature(144, 7, "minor")],
            style="chorale",
        ),
        "sixteen_tracks": _score(
            *(Track(p, notes=[Note(p, 1, 60 + p, 64)]) for p in range(15)),
            Track(0, is_drum=True, notes=[Note(0, 1, 42, 64)]),
        ),
        # Every pitch sounding at once: only then does the grammar bound durations from
        # below (a note may not end before a sounding one of its pitch that began earlier).
        "all_pitches_sounding": _score(
            Track(0, notes=[*(Note(0, 960, p, 64) for p in range(128)), Note(24, 960, 60, 64)]),
            Track(1, notes=[Note(48, 24, 60, 64)]),
        ),
        "empty_bars": _score(Track(0, notes=[Note(96 * 20, 24, 60, 64)])),
        "no_tracks": _score(),
    }


def valid_texts() -> dict[str, str]:
    texts = {path.stem: encode_midi(path.read_bytes()).text for path in EXAMPLES}
    texts |= {name: encode(score) for name, score in hand_made_scores().items()}
    return texts


def mutated_texts(texts: dict[str, str], per_text: int = 4, seed: int = 2026) -> dict[str, str]:
    """Each text cut short, with a token dropped, doubled or swapped with a neighbour."""
    rng = random.Random(seed)
    out = {}
    for name, text in texts.items():
        words = text.split()
        for k in range(per_text):
            mutant = list(words)
            at = rng.randrange(len(mutant))
            kind = ("cut", "drop", "double", "swap")[k % 4]
            if kind == "cut":
                mutant = mutant[:at]
            elif kind == "drop":
                del mutant[at]
            elif kind == "double":
                mutant.insert(at, mutant[at])
            elif at + 1 < len(mutant):
                mutant[at], mutant[at + 1] = mutant[at + 1], mutant[at]
            out[f"{name}_{kind}_{k}"] = " ".join(mutant)
    return out


def text_seeds() -> dict[str, bytes]:
    texts = valid_texts()
    seeds = {name: text.encode() for name, text in texts.items()}
    seeds |= {name: text.encode() for name, text in mutated_texts(texts).items()}
    seeds |= {
        "junk_words": b"piece style:none tempo:120 ts:4/4 inst:violin bar @0 t1 C4 blah end",
        "unicode": "piece style:none\u00a0tempo:120 ts:4/4 end \u2028".encode(),
        "empty_text": b"",
        "header_only": b"piece style:none tempo:120 ts:4/4 end",
    }
    # The structure-aware modes: a byte string steers a walk through the grammar or
    # picks vocabulary words; a few random ones start the fuzzer off in those modes.
    rng = random.Random(7)
    for k in range(8):
        seeds[f"walk_{k}"] = bytes((WALK_MODE,)) + rng.randbytes(64 << (k % 4))
        seeds[f"words_{k}"] = bytes((WORDS_MODE,)) + rng.randbytes(32 << (k % 3))
    return seeds


# ---- libFuzzer dictionaries: words the mutator inserts whole ----

MIDI_WORDS = (
    b"MThd", b"MTrk", b"\x00\x00\x00\x06", b"\xff\x2f\x00", b"\xff\x51\x03", b"\xff\x58\x04",
    b"\xff\x59\x02", b"\xff\x03", b"\xff\x06", b"\xb0\x40", b"\xe0\x00\x40", b"\xf0", b"\xf7",
    b"\x8f\xff\xff\x7f", b"music_lm style:",
)  # fmt: skip


def midi_dictionary() -> list[bytes]:
    return list(MIDI_WORDS)


def text_dictionary() -> list[bytes]:
    """Every word of the vocabulary, with a space before it (texts are split on spaces)."""
    return [f" {word}".encode() for word in VOCAB.tokens]


def write_dictionary(words: list[bytes], path: Path) -> None:
    """libFuzzer's dictionary format: one quoted entry a line, other bytes as \\xNN."""

    def quoted(word: bytes) -> str:
        inner = "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in word
        )
        return f'"{inner}"'

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{quoted(word)}\n" for word in words), encoding="ascii")


def write_corpus(seeds: dict[str, bytes], folder: Path) -> int:
    """Write each seed under its name and a short hash (so names never clash); return
    how many files are in the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        digest = hashlib.sha1(data).hexdigest()[:10]
        (folder / f"seed-{name}-{digest}").write_bytes(data)
    return sum(1 for _ in folder.iterdir())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python fuzz/seeds.py OUT_FOLDER  (writes OUT/midi, OUT/text and their "
              "libFuzzer dictionaries OUT/midi.dict, OUT/text.dict)")  # fmt: skip
        return 2
    out = Path(argv[1])
    midi = write_corpus(midi_seeds(), out / "midi")
    text = write_corpus(text_seeds(), out / "text")
    write_dictionary(midi_dictionary(), out / "midi.dict")
    write_dictionary(text_dictionary(), out / "text.dict")
    print(f"{out}/midi: {midi} files, {out}/text: {text} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
