"""Benchmark [bars]: short bars (pickups, meter changes inside a bar) and note-ons without a
note-off, the current tree beside the tree before the change, on the same files.

    .venv/bin/python bench/bars.py [--anchor REF] [--music21 N] [--no-write]

The files are written once into bench/.cache/bars/ (by the current tree) and then read by
both trees, each in its own process (PYTHONPATH at the tree; the anchor, default b08c741,
checked out in a temporary worktree):

- meters: seeded band files made with mido (drums, bass, piano; 480 PPQ, on the grid):
  pickups written as MuseScore writes them (1/4, then 4/4) and as a restated 4/4, one-beat
  lead-ins into 6/8, and meter changes at random beats inside a bar, tempo changes too;
- music21: pieces of music21's corpus as the corpus build writes them (`music21_midi`, which
  restates the meter where a short measure ends), spread over the collections;
- music21-writer: the same pieces as music21's own writer leaves them (as bench/codec.py's
  grid-aligned files are written), pickups from tick 0 under one time signature;
- midi_in: the four examples;
- note-offs: seeded guitar-like tracks where some note-offs are missing (the note is struck
  again, or never switched off), beside a well-formed piano track.

Per tree and set: meter events kept (the round-tripped file has a bar starting at the event's
position with that meter in force), notes exact at the grid, round trips verified (text
identical after text -> MIDI -> text, every note and meta event back), tokens per note, the
short bars in the text, and for note-offs the notes each pairing rule ended and how long
the notes ring. The "## Short bars and note-offs" section of RESULTS.md is written from it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache" / "bars"
sys.path.insert(0, str(BENCH))

from train import device_name, write_section  # noqa: E402

PPQ = 480

MEASURE = r"""
import json, sys
from fractions import Fraction
from pathlib import Path
from music_lm import midi_to_text, read_midi, text_to_midi
from music_lm.tokens.encoded import encode_midi
from music_lm.tokens.report import verify_round_trip

def bars_with_meter(score):
    starts = score.bar_starts(score.end_tick + 1)
    ppq = score.ticks_per_beat
    sigs = sorted(score.time_signatures, key=lambda t: t.tick)
    out = set()
    for start in starts:
        meter = [(t.numerator, t.denominator) for t in sigs if t.tick <= start]
        out.add((Fraction(start, ppq), meter[-1] if meter else (4, 4)))
    return out

results = {}
for folder in sys.argv[1:]:
    r = dict(files=0, notes=0, exact=0, meters=0, meters_kept=0, verified=0, tokens=0,
             short_bars=0, remarks={}, note_quarters=0.0, longest_quarters=0.0)
    for path in sorted(Path(folder).glob("*.mid")):
        data = path.read_bytes()
        encoded = encode_midi(data, name=path.name)
        original = encoded.read.score
        back = read_midi(text_to_midi(encoded.text)).score
        kept = bars_with_meter(back)
        ppq = original.ticks_per_beat
        for ts in original.time_signatures:
            r["meters"] += 1
            r["meters_kept"] += (Fraction(ts.tick, ppq), (ts.numerator, ts.denominator)) in kept
        c = encoded.changes
        r["files"] += 1
        r["notes"] += c.notes
        r["exact"] += c.notes_exact
        r["verified"] += verify_round_trip(encoded).ok
        words = encoded.text.split()
        r["tokens"] += len(words)
        r["short_bars"] += sum(1 for a, b in zip(words, words[1:])
                               if a.startswith("@") and b in ("bar", "end"))
        for kind, n in c.remarks.items():
            r["remarks"][kind] = r["remarks"].get(kind, 0) + n
        for track in encoded.grid.tracks:
            for note in track.notes:
                q = note.duration_tick / encoded.grid.ticks_per_beat
                r["note_quarters"] += q
                r["longest_quarters"] = max(r["longest_quarters"], q)
    results[Path(folder).name] = r
print(json.dumps(results))
"""


# ---- the files ----


def _track(name: str, channel: int, program: int | None, events: list) -> list:
    """mido messages of one track from (tick, order, message) events."""
    import mido

    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)])
    if program is not None:
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def _notes(channel: int, notes: list[tuple[int, int, int, int]]) -> list:
    import mido

    events = []
    for onset, length, pitch, velocity in notes:
        events.append((onset, 1, mido.Message("note_on", channel=channel, note=pitch,
                                              velocity=velocity)))  # fmt: skip
        events.append((onset + length, 0, mido.Message("note_off", channel=channel, note=pitch)))
    return events


def meter_file(rng: random.Random, kind: str) -> bytes:
    """A band file whose bar lines come from its time signature events (see the module)."""
    import mido

    q = PPQ
    meters: list[tuple[int, int, int]] = []  # (tick, numerator, denominator)
    if kind == "musescore pickup":
        pickup = rng.choice([1, 2, 3]) * q
        meters = [(0, pickup // q, 4), (pickup, 4, 4)]
    elif kind == "restated pickup":
        pickup = rng.choice([q // 2, q, 2 * q, 3 * q])
        meters = [(0, 4, 4), (pickup, 4, 4)]
    elif kind == "lead-in into 6/8":
        meters = [(0, 4, 4), (q, 6, 8)]
    else:  # meter changes at random beats inside bars
        tick, meter = 0, (4, 4)
        meters = [(0, 4, 4)]
        for _ in range(rng.randint(2, 4)):
            length = meter[0] * 4 * q // meter[1]
            tick += rng.randint(1, 4) * length + rng.choice([q // 2, q, 2 * q]) % length
            meter = rng.choice([(3, 4), (4, 4), (6, 8), (5, 4), (7, 8), (2, 4)])
            meters.append((tick, *meter))
    bar_lines, tick = [], 0  # every bar start up to 12 bars after the last change
    for index, (at, num, den) in enumerate(meters):
        stop = meters[index + 1][0] if index + 1 < len(meters) else at + 12 * num * 4 * q // den
        length = num * 4 * q // den
        bar_lines += list(range(at, stop, length))
        tick = stop
    end = tick
    lead, bass, drums = [], [], []
    for start, stop in zip(bar_lines, [*bar_lines[1:], end], strict=True):
        for beat in range(start, stop, q // 2):
            if rng.random() < 0.7:
                lead.append((beat, q // 2, rng.randint(60, 79), rng.choice([72, 88, 100])))
            drums.append((beat, q // 8, 42, rng.choice([64, 80, 96])))
        drums.append((start, q // 8, 36, 112))
        bass.append((start, max(stop - start - q // 4, q // 4), rng.randint(36, 47), 96))
    conductor = [(t, 0, mido.MetaMessage("time_signature", numerator=n, denominator=d))
                 for t, n, d in meters]  # fmt: skip
    conductor.append((0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(110))))
    if rng.random() < 0.5:
        conductor.append((bar_lines[len(bar_lines) // 2], 0,
                          mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(96))))  # fmt: skip
    midi = mido.MidiFile(type=1, ticks_per_beat=q)
    midi.tracks += [
        _track("conductor", 0, None, conductor),
        _track("Lead", 0, 81, _notes(0, lead)),
        _track("Bass", 1, 33, _notes(1, bass)),
        _track("Drums", 9, None, _notes(9, drums)),
    ]
    return _bytes(midi)


def noteoff_file(rng: random.Random) -> bytes:
    """A guitar track (re-struck notes whose note-off is missing, now and then a note never
    switched off) beside a well-formed piano track with overlapping unisons."""
    import mido

    q = PPQ
    guitar, piano = [], []
    tick = 0
    for _ in range(rng.randint(150, 300)):
        pitch = rng.choice([40, 45, 50, 55, 59, 64])
        guitar.append((tick, 1, mido.Message("note_on", channel=0, note=pitch, velocity=90)))
        if rng.random() < 0.8:  # most notes are switched off; the rest ring on
            off = tick + rng.choice([q // 2, q])
            guitar.append((off, 0, mido.Message("note_off", channel=0, note=pitch)))
        tick += q // 2
    for beat in range(0, tick, q):
        piano.append((beat, 1, mido.Message("note_on", channel=1, note=60, velocity=70)))
        piano.append((beat + 3 * q // 2, 0, mido.Message("note_off", channel=1, note=60)))
    midi = mido.MidiFile(type=1, ticks_per_beat=q)
    midi.tracks += [_track("Guitar", 0, 25, guitar), _track("Piano", 1, 0, piano)]
    return _bytes(midi)


def _music21_writer(path: str, number: int | None) -> bytes:
    """A piece as music21's own MIDI writer writes it (as bench/codec.py's grid-aligned set):
    repeats expanded, a pickup from tick 0 under one time signature."""
    from music21 import converter, stream
    from music21.midi import translate

    parsed = converter.parse(path, number=number)
    if isinstance(parsed, stream.Opus):
        parsed = parsed.scores[0]
    return translate.streamToMidiFile(parsed).writestr()


def _bytes(midi) -> bytes:
    import io

    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def write_files(music21_count: int) -> list[Path]:
    """The four sets of files, written once (the music21 set takes a minute or two)."""
    folders = []
    meters = CACHE / "meters"
    if not meters.exists():
        meters.mkdir(parents=True)
        rng = random.Random(20)
        kinds = ["musescore pickup", "restated pickup", "lead-in into 6/8", "inside a bar"]
        for index in range(40):
            kind = kinds[index % len(kinds)]
            name = f"{index:02d}-{kind.replace(' ', '-').replace('/', '-')}.mid"
            (meters / name).write_bytes(meter_file(rng, kind))
    folders.append(meters)
    from music_lm.corpus.sources import item_midi, music21_items

    items = music21_items()
    step = max(len(items) // music21_count, 1)
    pieces = CACHE / f"music21-{music21_count}"
    if not pieces.exists():
        tmp = CACHE / "music21-partial"
        tmp.mkdir(parents=True, exist_ok=True)
        for index, item in enumerate(items[::step][:music21_count]):
            try:
                data = item_midi(item)
            except Exception as err:  # a piece music21 cannot write is left out
                print(f"skipped {item}: {err}", file=sys.stderr)
                continue
            (tmp / f"{index:03d}.mid").write_bytes(data)
        tmp.rename(pieces)
    folders.append(pieces)
    raw = CACHE / f"music21-writer-{music21_count}"
    if not raw.exists():  # the same pieces as music21's own writer leaves them
        tmp = CACHE / "music21-writer-partial"
        tmp.mkdir(parents=True, exist_ok=True)
        for path in sorted(pieces.glob("*.mid")):
            item = items[::step][int(path.stem)]
            try:
                data = _music21_writer(item.path, item.number)
            except Exception as err:  # a piece music21 cannot write is left out
                print(f"skipped {item}: {err}", file=sys.stderr)
                continue
            (tmp / path.name).write_bytes(data)
        tmp.rename(raw)
    folders.append(raw)
    examples = CACHE / "midi_in"
    examples.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "midi_in").glob("*.mid")):
        (examples / path.name).write_bytes(path.read_bytes())
    folders.append(examples)
    noteoffs = CACHE / "note-offs"
    if not noteoffs.exists():
        noteoffs.mkdir(parents=True)
        rng = random.Random(21)
        for index in range(20):
            (noteoffs / f"{index:02d}.mid").write_bytes(noteoff_file(rng))
    folders.append(noteoffs)
    return folders


# ---- the two trees ----


def measure(tree: Path, folders: list[Path]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *map(str, folders)],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def section(results: dict[str, dict], anchor: str) -> str:
    old, new = results["anchor"], results["current"]
    lines = [
        "## Short bars and note-offs",
        "",
        f"`bench/bars.py`, {date.today()}, {device_name()}; the current tree beside the tree "
        f"before [bars] (anchor: {anchor}), on the same files (bench/.cache/bars/), each read "
        "by its own process.",
        "",
        "| set | figure | anchor | current |",
        "|---|---|---|---|",
    ]
    for name, a in old.items():
        b = new[name]
        label = f"{name} ({b['files']} files, {b['notes']:,} notes)"
        rows = [
            ("meter events kept at their position",
             _percent(a["meters_kept"], a["meters"]) + f" of {a['meters']}",
             _percent(b["meters_kept"], b["meters"]) + f" of {b['meters']}"),
            ("notes exact at the grid", _percent(a["exact"], a["notes"]),
             _percent(b["exact"], b["notes"])),
            ("round trips verified", f"{a['verified']} of {a['files']}",
             f"{b['verified']} of {b['files']}"),
            ("tokens per note", f"{a['tokens'] / a['notes']:.3f}",
             f"{b['tokens'] / b['notes']:.3f} ({b['tokens'] / a['tokens']:.3f}× tokens)"),
            ("short bars in the text", str(a["short_bars"]), str(b["short_bars"])),
        ]  # fmt: skip
        if name == "note-offs":
            rows.append(
                (
                    "mean / longest note (quarter notes)",
                    f"{a['note_quarters'] / a['notes']:.2f} / {a['longest_quarters']:.1f}",
                    f"{b['note_quarters'] / b['notes']:.2f} / {b['longest_quarters']:.1f}",
                )
            )
            for kind in sorted(set(a["remarks"]) | set(b["remarks"])):
                if "note" in kind:
                    rows.append((f"remark: {kind}", str(a["remarks"].get(kind, 0)),
                                 str(b["remarks"].get(kind, 0))))  # fmt: skip
        for index, (figure, x, y) in enumerate(rows):
            lines.append(f"| {label if index == 0 else ''} | {figure} | {x} | {y} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchor", default="b08c741")
    parser.add_argument("--music21", type=int, default=120, help="music21 pieces to write")
    parser.add_argument("--no-write", action="store_true", help="Print; leave RESULTS.md.")
    args = parser.parse_args()
    folders = write_files(args.music21)
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "anchor"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), args.anchor],
                       cwd=ROOT, check=True)  # fmt: skip
        try:
            results = {"anchor": measure(old, folders), "current": measure(ROOT, folders)}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=True)
    text = section(results, args.anchor)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
