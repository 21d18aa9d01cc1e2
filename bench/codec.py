"""Benchmark the music_lm codec against MidiTok REMI and TSD on the same MIDI files.

Three sets of files: the examples in midi_in/, a seeded sample of music21's corpus written
once to MIDI in bench/.cache/ (notation-style, grid-aligned) and seeded "human-played" files
made with mido (timing jitter, overlaps, drums, a tempo change). Per tokenizer: encode (file
bytes -> tokens) and decode (tokens -> MIDI bytes) throughput, tokens per note, and the
note-level fidelity of the decoded file against the original, both read with music_lm's
reader. Prints a markdown report and writes it as the "## Codec vs MidiTok" section of --out.

    .venv/bin/python bench/codec.py [--max-files N] [--repeat 3] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import importlib.metadata as meta
import io
import json
import math
import os
import platform
import pstats
import random
import re
import subprocess
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import mido
from miditok import REMI, TSD, MusicTokenizer, TokenizerConfig
from mido import Message, MetaMessage
from symusic import Score as SymScore

from music_lm import midi_to_text, read_midi, text_to_midi
from music_lm.tokens.vocab import GRID_PER_QUARTER, MAX_DURATION_STEPS, VOCAB

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
SECTION = "## Codec vs MidiTok"
STEP = Fraction(1, GRID_PER_QUARTER)
LONGEST = MAX_DURATION_STEPS // GRID_PER_QUARTER  # quarters: the longest note music_lm writes
# 24 steps per beat for positions and for every duration up to 12 beats (MidiTok's longest
# duration is the end of beat_res): the codec's grid (32nds, triplets, 16th triplets), so
# that a miss is the tokenizer's and not a coarser setting's.
BEAT_RES = {(0, 4): GRID_PER_QUARTER, (4, 12): GRID_PER_QUARTER}
# A note: ((program, drum, pitch, onset, duration), velocity), times in quarter notes.
Item = tuple[tuple[int, bool, int, Fraction, Fraction], int]
NOTES = """\
- files: {examples} from midi_in/, {corpus} from music21's corpus (bench/.cache/), {human} \
human-played; {failures} tokenizer failures (a file that fails for one is left out for all). \
Timing: best of {repeat} passes over the files of a set, file by file (encode, then decode \
its tokens), from and to bytes in memory, garbage collection off (as in timeit) except in the \
"GC on" row.
- MidiTok: REMI and TSD with use_programs, use_tempos, use_time_signatures, one token stream, \
32 velocities, pitches 0..127, music_lm's meters and beat_res {beat_res}: music_lm's 1/24 \
quarter for positions and for durations up to 12 beats, MidiTok's longest (longer notes are \
clipped). MidiTok's beat is the meter's denominator: x/8 meters get 48 steps per quarter, x/2 \
ones 12. MidiTok rounds durations where music_lm (and the rule below) rounds note ends, hence \
the ±1/24 row.
- Fidelity: the original and the decoded file are read with music_lm's reader. A note is exact \
when the decoded file has one of the same program, drum flag, pitch, onset and duration, the \
original's onset and end rounded to the nearest 1/24 quarter (duration at least 1/24). \
Velocity is compared on its own, for notes with exact pitch and onset. The rounding rule is \
music_lm's own (onsets and ends to the nearest step), so music_lm's 100 % on human-played files \
says it keeps every note and moves it no further than the grid requires; MidiTok, which rounds \
durations instead, can only lose on that row, hence the ±1/24 row beside it.
"""


# ---- the files ----


def write_piece(job: tuple[str, int | None, Path]) -> str | None:
    """Write one music21 corpus piece (one tune of an ABC file when number is set) as MIDI."""
    from music21 import corpus, stream

    path, number, out = job
    warnings.simplefilter("ignore")
    try:
        parsed = corpus.parse(path, number=number)
        (parsed.scores[0] if isinstance(parsed, stream.Opus) else parsed).write("midi", fp=out)
        return out.name if read_midi(out).score.note_count else None
    except Exception:  # a piece music21 cannot parse or write is skipped
        return None


def corpus_files(count: int, seed: int = 0) -> list[Path]:
    """`count` pieces, round-robin over music21's collections (seeded), written once."""
    folder = CACHE / f"music21-{count}-{seed}"
    manifest = folder / "files.json"
    if not manifest.exists():
        from music21 import corpus

        pools: defaultdict[str, list[tuple[str, int | None]]] = defaultdict(list)
        for p in sorted(map(Path, corpus.getPaths())):
            collection = p.parts[p.parts.index("corpus") + 1]
            if collection in ("demos", "theoryExercises") or p.suffix == ".rntxt":
                continue  # test files and roman-numeral analyses, not music
            refs = re.findall(r"^X:\s*(\d+)", p.read_text(errors="replace"), re.M)
            refs = refs if p.suffix == ".abc" and len(refs) > 1 else [None]
            pools[collection] += [(str(p), int(r) if r else None) for r in refs]
        small = [c for c, units in pools.items() if len(units) < 5]  # pooled as "other"
        pools["other"] = [u for c in small for u in pools.pop(c)]
        rng, jobs = random.Random(seed), []
        for name, units in sorted(pools.items()):
            rng.shuffle(units)
            for i, (path, number) in enumerate(units[:count]):
                stem = Path(path).stem + (f"-{number}" if number else "")
                jobs.append((i, path, number, folder / f"{name}-{i:03d}-{stem}.mid"))
        folder.mkdir(parents=True, exist_ok=True)
        written: list[str] = []
        with Pool(2) as pool:  # in round-robin order until `count` pieces are written
            for name in pool.imap(write_piece, [j[1:] for j in sorted(jobs, key=lambda j: j[0])]):
                written += [name] if name else []
                if len(written) == count:
                    break
        manifest.write_text(json.dumps(sorted(written)))
    return [folder / name for name in json.loads(manifest.read_text())]


def human_file(rng: random.Random) -> bytes:
    """A "played" file: jittered onsets, legato overlaps, varied velocities and PPQ, chords,
    1-3 instruments and drums on channel 10, a tempo change half way."""
    ppq, beats, bars = rng.choice((96, 384, 480, 960)), rng.choice((3, 4)), rng.randint(8, 16)
    length, bpm = ppq * beats * bars, rng.uniform(70, 150)
    conductor = [(0, MetaMessage("time_signature", numerator=beats, denominator=4))]
    conductor += [(t, MetaMessage("set_tempo", tempo=mido.bpm2tempo(b))) for t, b in
                  ((0, bpm), (length // 2, bpm * 1.1))]  # fmt: skip
    midi, tracks = mido.MidiFile(type=1, ticks_per_beat=ppq), [conductor]
    for ch in [*range(rng.randint(1, 3)), 9]:
        step = ppq // (2 if ch == 9 else rng.choice((2, 3, 4)))  # 8ths, 8th triplets, 16ths
        program = Message("program_change", channel=ch, program=rng.randrange(128))
        events = [] if ch == 9 else [(0, program)]
        for tick in range(0, length, step):
            for _ in range(rng.choice((0, 1, 1, 2, 3))):  # rests, single notes, chords
                on = max(0, tick + round(rng.gauss(0, ppq / 40)))  # about 12 ms at 120 BPM
                off = on + max(1, round(step * rng.uniform(0.3, 1.6)))  # staccato to legato
                pitch = rng.choice((36, 38, 42, 46)) if ch == 9 else rng.randint(40, 84)
                velocity, end = rng.randint(20, 127), rng.choice(("note_off", "note_on"))
                events.append((on, Message("note_on", channel=ch, note=pitch, velocity=velocity)))
                events.append((off, Message(end, channel=ch, note=pitch, velocity=0)))  # an off
        tracks.append(events)
    for events in tracks:  # note-offs before note-ons on a tick, then delta times
        events.sort(key=lambda e: (e[0], e[1].type == "note_on" and e[1].velocity > 0))
        ticks = [0] + [tick for tick, _ in events]
        midi.tracks.append(mido.MidiTrack(m.copy(time=t - ticks[i]) for i, (t, m) in
                                          enumerate(events)))  # fmt: skip
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def human_files(count: int, seed: int = 0) -> list[Path]:
    """`count` human-played files, made afresh each run (cheap) and kept for inspection."""
    (folder := CACHE / f"human-{count}-{seed}").mkdir(parents=True, exist_ok=True)
    rng, paths = random.Random(seed), [folder / f"human-{i:03d}.mid" for i in range(count)]
    for path in paths:
        path.write_bytes(human_file(rng))
    return paths


# ---- the tokenizers ----


@dataclass
class Tokenizer:
    name: str
    encode: Callable[[bytes], Any]  # file bytes -> tokens
    count: Callable[[Any], int]  # tokens -> number of tokens
    decode: Callable[[Any], bytes]  # tokens -> MIDI file bytes


def miditok(name: str, cls: type[MusicTokenizer]) -> Tokenizer:
    meters: defaultdict[int, list[int]] = defaultdict(list)  # music_lm's time signatures
    for n, d in sorted(VOCAB.time_signatures):
        meters[d].append(n)
    tok = cls(TokenizerConfig(
        pitch_range=(0, 127), drums_pitch_range=(0, 127), beat_res=BEAT_RES,  # as music_lm:
        num_velocities=32, time_signature_range=dict(meters),  # all keys, 32 bins, these meters
        use_programs=True, use_tempos=True, use_time_signatures=True,
        one_token_stream_for_programs=True,  # and write changes only, as music_lm does
        delete_equal_successive_tempo_changes=True, delete_equal_successive_time_sig_changes=True,
    ))  # fmt: skip
    return Tokenizer(name, lambda data: tok.encode(SymScore.from_midi(data)), len,
                     lambda tokens: tok.decode(tokens).dumps_midi())  # fmt: skip


def tokenizers() -> list[Tokenizer]:
    ours = Tokenizer("music_lm", midi_to_text, lambda text: len(text.split()), text_to_midi)
    return [ours, miditok("MidiTok REMI", REMI), miditok("MidiTok TSD", TSD)]


# ---- measuring ----


def notes_of(data: bytes, snap: bool) -> list[Item]:
    """The notes of a file in quarter notes; snap: onset and end to the nearest 1/24 quarter
    (halves up), duration at least 1/24 (the codec's rule)."""
    score, out = read_midi(data).score, []
    for track in score.tracks:
        for n in track.notes:
            onset, end = (Fraction(t, score.ticks_per_beat) for t in (n.onset_tick, n.end_tick))
            if snap:
                onset, end = (math.floor(x / STEP + Fraction(1, 2)) * STEP for x in (onset, end))
                end = max(end, onset + STEP)
            out.append(((track.program, track.is_drum, n.pitch, onset, end - onset), n.velocity))
    return out


def paired(
    original: list[Item],
    decoded: list[Item],
    key: Callable[[Item], Any],
    value: Callable[[Item], Any],
    close: Callable[[Any, Any], bool],
) -> int:
    """Original notes paired with a decoded note of the same key (the sorted values of a key
    paired in order) whose value is close to theirs."""
    groups: defaultdict[Any, tuple[list, list]] = defaultdict(lambda: ([], []))
    for side, notes in enumerate((original, decoded)):
        for note in notes:
            groups[key(note)][side].append(value(note))
    pairs = (zip(sorted(a), sorted(b), strict=False) for a, b in groups.values())
    return sum(close(x, y) for pair in pairs for x, y in pair)  # fmt: skip


def compare(original: list[Item], decoded: list[Item]) -> Counter[str]:
    def matched(key: Callable[[Item], Any]) -> int:
        return sum((Counter(map(key, original)) & Counter(map(key, decoded))).values())

    def start(n: Item) -> Any:
        return n[0][:4]  # program, drum, pitch, onset

    onset = matched(start)
    return Counter(
        exact=matched(lambda n: n[0]),
        near=paired(original, decoded, start, lambda n: n[0][4], lambda x, y: abs(x - y) <= STEP),
        onset=onset,
        velocity=paired(original, decoded, start, lambda n: n[1], lambda x, y: abs(x - y) <= 4),
        dropped=len(original) - onset,
        added=len(decoded) - onset,
        long=sum(n[0][4] > LONGEST for n in original),  # the same for every tokenizer
    )


@dataclass
class Stats:  # of one tokenizer on one set of files
    files: int = 0
    notes: int = 0
    tokens: int = 0
    encode_s: float = math.inf  # best pass over all files, garbage collection off
    decode_s: float = math.inf
    with_gc_s: float = math.inf  # encode + decode, garbage collection on
    fidelity: Counter[str] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)  # files with notes not exact at the grid


Measured = tuple[dict[str, Stats], dict[str, bytes]]  # stats by tokenizer, files by path


def measure(toks: list[Tokenizer], paths: list[Path], repeat: int, errors: list[str]) -> Measured:
    """Tokens and fidelity file by file, then the best of `repeat` timed passes. A file that
    fails for one tokenizer (the failure goes to `errors`) is left out for all."""
    stats, files = {t.name: Stats() for t in toks}, {}
    for path in paths:
        data, name, results = path.read_bytes(), str(path.relative_to(ROOT)), {}
        for tok in toks:
            try:
                original, tokens = notes_of(data, snap=True), tok.encode(data)
                decoded = notes_of(tok.decode(tokens), snap=False)
                results[tok.name] = tok.count(tokens), compare(original, decoded)
            except Exception as err:  # any failure is reported, not raised
                errors.append(f"{tok.name}: {name}: {type(err).__name__}: {err}")
        if len(results) < len(toks):
            continue
        files[name] = data
        for tok_name, (count, result) in results.items():
            s = stats[tok_name]
            s.files, s.notes, s.tokens = s.files + 1, s.notes + len(original), s.tokens + count
            s.fidelity.update(result)
            if result["exact"] < len(original):
                s.misses.append(f"{name} ({len(original) - result['exact']} notes)")
    for _ in range(repeat):  # tokenizers interleaved, so drifts in machine speed hit all
        for tok, collect in ((tok, collect) for tok in toks for collect in (False, True)):
            gc.collect()
            if not collect:
                gc.disable()  # as timeit does: the collector's cost depends on the whole heap
            encode_s = decode_s = 0.0
            for data in files.values():  # file by file, as a data pipeline would
                start = time.perf_counter()
                tokens = tok.encode(data)
                middle = time.perf_counter()
                tok.decode(tokens)
                encode_s, decode_s = (
                    encode_s + middle - start,
                    decode_s + time.perf_counter() - middle,
                )
            gc.enable()
            s = stats[tok.name]
            if collect:
                s.with_gc_s = min(s.with_gc_s, encode_s + decode_s)
            else:
                s.encode_s, s.decode_s = min(s.encode_s, encode_s), min(s.decode_s, decode_s)
    return stats, files


def profile(files: dict[str, bytes], top: int = 25) -> None:
    """cProfile of music_lm's encode + decode over `files`, by cumulative time."""
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [text_to_midi(midi_to_text(data)) for data in files.values()])
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(top)


# ---- the report ----


def table(sets: dict[str, dict[str, Stats]], names: list[str]) -> list[str]:
    def row(label: str, value: Callable[[Stats], float], spec: str, ratio: bool = True) -> str:
        ref = value(stats["MidiTok REMI"])
        cells = [format(value(stats[n]), spec) + (f" ({value(stats[n]) / ref:.2f}× REMI)"
                 if ratio and n != "MidiTok REMI" else "") for n in names]  # fmt: skip
        return f"| {label} | " + " | ".join(cells) + " |"

    def share(key: str) -> Callable[[Stats], float]:
        return lambda s: 100 * s.fidelity[key] / s.notes

    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for title, stats in sets.items():
        first = stats[names[0]]
        lines += [
            f"| **{title}: {first.files} files, {first.notes} notes, {first.fidelity['long']} "
            f"longer than {LONGEST} quarters** |" + " |" * len(names),
            row("tokens / note", lambda s: s.tokens / s.notes, ".2f"),
            row("encode files/s", lambda s: s.files / s.encode_s, ".1f"),
            row("decode files/s", lambda s: s.files / s.decode_s, ".1f"),
            row("encode + decode files/s", lambda s: s.files / (s.encode_s + s.decode_s), ".1f"),
            row("encode + decode notes/s", lambda s: s.notes / (s.encode_s + s.decode_s), ",.0f"),
            row("encode + decode files/s, GC on", lambda s: s.files / s.with_gc_s, ".1f"),
            row("exact at the grid, %", share("exact"), ".2f", ratio=False),
            row("pitch + onset exact, duration ±1/24, %", share("near"), ".2f", ratio=False),
            row("pitch + onset exact, %", share("onset"), ".2f", ratio=False),
            row("pitch + onset exact, velocity ±4, %", share("velocity"), ".2f", ratio=False),
            "| notes dropped / added | "
            + " | ".join(
                f"{stats[n].fidelity['dropped']} / {stats[n].fidelity['added']}" for n in names
            )
            + " |",
        ]
    return lines


def goals(sets: dict[str, dict[str, Stats]]) -> list[str]:
    """The issue's goals, set by set, against MidiTok REMI (tokens) and both (speed)."""
    rows = [["≥ 20 % fewer tokens per note than REMI"], ["encode + decode ≥ MidiTok's speed"],
            ["100 % of notes exact at the grid"]]  # fmt: skip
    for stats in sets.values():
        ours, remi, tsd = stats["music_lm"], stats["MidiTok REMI"], stats["MidiTok TSD"]
        fewer = 1 - (ours.tokens / ours.notes) / (remi.tokens / remi.notes)
        speed = [(s.encode_s + s.decode_s) / (ours.encode_s + ours.decode_s) for s in (remi, tsd)]
        speed += [s.with_gc_s / ours.with_gc_s for s in (remi, tsd)]
        exact, long = ours.fidelity["exact"] / ours.notes, ours.fidelity["long"]
        rows[0].append(f"{fewer:.1%} fewer: {verdict(fewer >= 0.2)}")
        rows[1].append(
            f"{speed[0]:.2f}× REMI, {speed[1]:.2f}× TSD; GC on: {speed[2]:.2f}× REMI, "
            f"{speed[3]:.2f}× TSD: {verdict(min(speed) >= 1)}"
        )
        rows[2].append(
            f"{exact:.3%}: {verdict(exact == 1)}"
            + f" ({long} notes are longer than {LONGEST} quarters)" * bool(long)
        )
    head = ["| goal (music_lm) | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    return head + ["| " + " | ".join(row) + " |" for row in rows]


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def environment() -> list[str]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = re.findall(r"Model name:\s*(.+)", lscpu)[0].strip()
    except (OSError, subprocess.CalledProcessError, IndexError):
        cpu = platform.processor() or "unknown CPU"
    packages = ("music-lm", "miditok", "symusic", "mido")
    describe = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
    git = subprocess.run(describe, capture_output=True, text=True).stdout.strip() or "?"
    return [
        f"- machine: {cpu}, {os.cpu_count()} cores, {platform.system()}; one process",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- versions: Python {platform.python_version()}, "
        + ", ".join(f"{p} {meta.version(p)}" for p in packages)
        + f" (music_lm at git {git})",
        f"- command: `python {' '.join(sys.argv)}`",
    ]


def write_section(out: Path, text: str) -> None:
    """Replace the section in `out` (or append it), leaving the other sections as they are."""
    old = out.read_text() if out.exists() else "# Benchmark results\n"
    section = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
    if section.search(old):
        out.write_text(section.sub(lambda _: text + "\n", old).rstrip("\n") + "\n")
    else:
        out.write_text(old.rstrip("\n") + "\n\n" + text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-files", type=int, help="use at most N files of each source")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes; the best one counts")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--corpus", type=int, default=200, help="music21 pieces to write")
    ap.add_argument("--human", type=int, default=50, help="human-played files to make")
    ap.add_argument("--profile", action="store_true", help="cProfile music_lm (to stderr)")
    args = ap.parse_args()
    cut, toks, errors = slice(args.max_files), tokenizers(), []
    examples = sorted((ROOT / "midi_in").glob("*.mid"))[cut]
    paths = {"grid-aligned (midi_in + music21)": examples + corpus_files(args.corpus)[cut],
             "human-played (mido, seeded)": human_files(args.human)[cut]}  # fmt: skip
    measured = {title: measure(toks, p, args.repeat, errors) for title, p in paths.items()}
    sets = {title: stats for title, (stats, _) in measured.items()}
    files = {name: data for _, used in measured.values() for name, data in used.items()}
    if args.profile:
        profile(files)
    in_examples = sum(name.startswith("midi_in") for name in files)
    in_corpus = sum(name.startswith("bench/.cache/music21") for name in files)
    notes = NOTES.format(examples=in_examples, corpus=in_corpus,
                         human=len(files) - in_examples - in_corpus, failures=len(errors),
                         repeat=args.repeat, beat_res=BEAT_RES)  # fmt: skip
    names = [t.name for t in toks]
    lines = [SECTION, "", *environment(), notes, *table(sets, names), "", *goals(sets), ""]
    misses = {title: stats["music_lm"].misses for title, stats in sets.items()}
    lines += [f"- music_lm, {title}: {len(m)} files with notes not exact at the grid, e.g. "
              + "; ".join(m[:3]) for title, m in misses.items() if m]  # fmt: skip
    lines += [f"- failure: {e}" for e in errors[:10]] + ["- ... and more"] * (len(errors) > 10)
    print("\n".join(lines))
    write_section(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
