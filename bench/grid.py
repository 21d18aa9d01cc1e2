"""Measure which onset/duration grid (steps per quarter note) the codec should use.

For a stratified, seeded sample of music21's bundled corpus, every note (chord pitches
counted one by one, grace notes skipped, tied notes merged as they sound in MIDI) is
reduced to its absolute onset and its duration in quarter lengths, as exact fractions.
A value lies on a grid of G steps per quarter iff its denominator divides G, so each
note is stored only as (onset denominator, duration denominator) and every candidate
grid is scored from those counts.

    .venv/bin/python bench/grid.py [--max-works 400] [--seed 0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import random
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from fractions import Fraction
from multiprocessing import Pool
from pathlib import Path
from typing import NamedTuple

import music21
from music21 import chord, corpus, harmony, note, stream

GRIDS = (4, 8, 12, 16, 24, 32, 48, 96)
CHOSEN = 24  # the codec's grid (music_lm.tokens.vocab.GRID_PER_QUARTER)
BY_COLLECTION = (12, 24, 48)
SKIP_DIRS = {"demos", "theoryExercises"}  # test files, not music
SKIP_SUFFIXES = {".rntxt"}  # roman-numeral analyses: chords with no real notes
MIN_UNITS = 5  # corpus folders with fewer pieces are pooled as "other"
Args = argparse.Namespace
DenPair = tuple[int, int]  # (onset denominator, duration denominator) of one note


class Unit(NamedTuple):
    collection: str
    path: str
    number: int | None  # ABC reference number (X:) inside a many-tune file


def frac(x: float | Fraction) -> Fraction:
    return Fraction(x).limit_denominator(10080)  # 10080 = 2^5 3^2 5 7: floats -> exact


def collect(score: stream.Score) -> Counter[DenPair]:
    """Count notes by (onset, duration) denominators, merging tied notes per part and pitch."""
    counts: Counter[DenPair] = Counter()
    for part in score.parts or [score]:
        notes: list[list[Fraction]] = []  # [onset, duration] of each sounding note
        open_ties: dict[float, list[Fraction]] = {}
        for el in part.flatten().notes:
            if isinstance(el, harmony.Harmony) or el.quarterLength == 0:
                continue  # chord symbols / analyses, grace notes
            onset, dur = frac(el.offset), frac(el.quarterLength)
            for sub in el.notes if isinstance(el, chord.ChordBase) else [el]:
                tie = sub.tie or el.tie
                kind = tie.type if tie else None
                key = sub.pitch.ps if isinstance(sub, note.Note) else None  # unpitched: no merge
                if kind in ("stop", "continue") and key in open_ties:
                    open_ties[key][1] += dur  # continuation of a tied note
                    if kind == "stop":
                        del open_ties[key]
                    continue
                notes.append([onset, dur])
                if kind in ("start", "continue") and key is not None:
                    open_ties[key] = notes[-1]
        counts.update((o.denominator, d.denominator) for o, d in notes)
    return counts


def work(unit: Unit) -> tuple[Unit, Counter[DenPair] | None]:
    """Parse one piece from source (no pickle cache, so timings are honest)."""
    warnings.simplefilter("ignore")
    try:
        parsed = corpus.parse(unit.path, number=unit.number, forceSource=True)
        scores = parsed.scores if isinstance(parsed, stream.Opus) else [parsed]
        counts: Counter[DenPair] = Counter()
        for score in scores:
            counts.update(collect(score))
        return unit, counts
    except Exception:  # any parser failure: count the piece as skipped
        return unit, None


def sample(max_works: int, seed: int) -> list[Unit]:
    """Every piece of the corpus (ABC tunes one by one), then a round-robin over collections."""
    by_dir: defaultdict[str, list[Unit]] = defaultdict(list)
    for p in sorted(map(Path, corpus.getPaths())):
        folder = p.parts[p.parts.index("corpus") + 1]
        if folder in SKIP_DIRS or p.suffix in SKIP_SUFFIXES:
            continue
        refs = re.findall(r"^X:\s*(\d+)", p.read_text(errors="replace"), re.M)
        refs = refs if p.suffix == ".abc" and len(refs) > 1 else [None]
        by_dir[folder] += [Unit(folder, str(p), int(r) if r else None) for r in refs]
    pools: defaultdict[str, list[Unit]] = defaultdict(list)
    for folder, units in sorted(by_dir.items()):
        name = folder if len(units) >= MIN_UNITS else "other"
        pools[name] += [u._replace(collection=name) for u in units]
    rng = random.Random(seed)
    for units in pools.values():
        rng.shuffle(units)
    chosen: list[Unit] = []
    while len(chosen) < max_works and any(pools.values()):
        for units in pools.values():
            if units and len(chosen) < max_works:
                chosen.append(units.pop())
    return chosen


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def both(counts: Counter[DenPair], g: int) -> int:
    """Notes whose onset and duration both lie on the grid of g steps per quarter."""
    return sum(n for (o, d), n in counts.items() if g % o == 0 and g % d == 0)


def lossless(counts: Counter[DenPair], g: int) -> bool:
    return both(counts, g) == sum(counts.values())


def kind_of(den: int) -> str:
    """The rhythm a quarter-length denominator comes from.

    Anything else is a file artefact: MusicXML whose divisions cannot hold a third (a
    triplet eighth read as 341/1024), or a bar whose divisions are simply wrong (1/17).
    """
    odd, threes = den, 1
    while odd % 2 == 0:
        odd //= 2
    while odd % 3 == 0:
        odd, threes = odd // 3, threes * 3
    twos = den // odd // threes
    tuplets = {5: "quintuplets", 7: "septuplets", 11: "11-tuplets", 13: "13-tuplets"}
    if odd in tuplets and twos <= 32 and threes <= 3:
        return tuplets[odd]
    if odd == 1 and twos <= 32 and threes <= 9:
        if threes == 9:
            return "nested triplets"
        return {16: "64th notes", 32: "128th notes"}.get(twos, "?") + (" (triplet)" * (threes == 3))
    return "file artefact (rounded triplet, bad divisions)"


def table(head: str, rows: list[list[object]], left: int = 1) -> list[str]:
    """Markdown table from 'a | b | c' headings; `left` text columns, then numbers."""
    rule = "|" + "---|" * left + "---:|" * (head.count("|") + 1 - left)
    return ["", f"| {head} |", rule, *("| " + " | ".join(map(str, r)) + " |" for r in rows), ""]


def report(
    pieces: list[tuple[Unit, Counter[DenPair]]], failed: Counter[str], secs: float, args: Args
) -> str:
    total: Counter[DenPair] = sum((c for _, c in pieces), Counter())
    n = sum(total.values())
    out = [
        "# Grid measurement on the music21 corpus\n",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, music21 {music21.__version__}",
        f"- sample: {len(pieces)} pieces parsed, {sum(failed.values())} failed to parse "
        f"(skipped); {n} notes; seed {args.seed}; {secs:.0f} s with {args.jobs} jobs",
        f"- command: `python {' '.join(sys.argv)}`",
        "\n## All notes, by grid (G steps per quarter note)",
    ]
    rows: list[list[object]] = []
    for g in GRIDS:
        onsets = sum(k for (o, _), k in total.items() if g % o == 0)
        durs = sum(k for (_, d), k in total.items() if g % d == 0)
        whole = sum(lossless(c, g) for _, c in pieces)
        rows.append([g, 4 * g, pct(onsets, n), pct(durs, n), pct(both(total, g), n)])
        rows[-1].append(pct(whole, len(pieces)))
    head = "G | steps per 4/4 bar | onsets on grid | durations on grid | notes with both"
    out += table(head + " | pieces fully on grid", rows)

    # Notes off the chosen grid, keyed by the lcm of their off-grid denominators.
    off: Counter[int] = Counter()
    off_pieces: defaultdict[int, set[Unit]] = defaultdict(set)
    for unit, counts in pieces:
        for (o, d), k in counts.items():
            if dens := [x for x in (o, d) if CHOSEN % x]:
                off[math.lcm(*dens)] += k
                off_pieces[math.lcm(*dens)].add(unit)
    rows = []
    for den, k in off.most_common():
        rows.append([f"1/{den}", kind_of(den), k, pct(k, n), len(off_pieces[den])])
        rows[-1].append(math.lcm(CHOSEN, den))  # finest grid needed to hold it as well
    out += [f"## Notes off the G={CHOSEN} grid, by denominator (in quarter lengths)"]
    head = f"value | rhythm | notes | share of notes | pieces | G that holds it and {CHOSEN}"
    out += table(head, rows, left=2)
    kinds: Counter[str] = Counter()
    for den, k in off.items():
        kinds[kind_of(den)] += k
    out += [f"## Notes off the G={CHOSEN} grid, by kind"]
    out += table(
        "rhythm | notes | share of notes", [[*kv, pct(kv[1], n)] for kv in kinds.most_common()]
    )

    groups: defaultdict[str, list[Counter[DenPair]]] = defaultdict(list)
    for unit, counts in pieces:
        groups[unit.collection].append(counts)
    rows = []
    shares: list[list[float]] = []  # per collection, for the unweighted mean row
    for name, cs in sorted(groups.items()):
        sub: Counter[DenPair] = sum(cs, Counter())
        m = sum(sub.values())
        shares.append([both(sub, g) / max(m, 1) for g in BY_COLLECTION])
        shares[-1].append(sum(lossless(c, CHOSEN) for c in cs) / len(cs))
        rows.append([name, len(cs), failed[name], m, *(pct(x, 1) for x in shares[-1])])
    mean = [pct(sum(col) / len(col), 1) for col in zip(*shares, strict=True)]
    rows.append(["*mean over collections*", "", "", "", *mean])
    head = " | ".join(
        ["collection | pieces | failed | notes", *(f"both on {g}" for g in BY_COLLECTION)]
    )
    out += ["## Per collection: share of notes with onset and duration on the grid"]
    out += table(f"{head} | pieces fully on {CHOSEN}", rows)
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-works", type=int, default=400, help="pieces to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="parallel parser processes")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("grid_results.md"))
    args = ap.parse_args()
    start = time.perf_counter()
    units = sample(args.max_works, args.seed)
    # Whole files before single ABC tunes, biggest first, so no slow parse comes last.
    units.sort(key=lambda u: (u.number is None, os.path.getsize(u.path)), reverse=True)
    pieces: list[tuple[Unit, Counter[DenPair]]] = []
    failed: Counter[str] = Counter()
    with Pool(args.jobs) as pool:
        for unit, counts in pool.imap_unordered(work, units):
            if counts is None:
                failed[unit.collection] += 1
            else:
                pieces.append((unit, counts))
    pieces.sort(key=lambda pc: (pc[0].path, pc[0].number or 0))
    text = report(pieces, failed, time.perf_counter() - start, args)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
