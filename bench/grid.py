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
from music21 import chord, corpus, harmony, stream

GRIDS = (4, 8, 12, 16, 24, 32, 48, 96)
CHOSEN = 24  # the codec's grid (music_lm.vocab.GRID_PER_QUARTER)
BY_COLLECTION = (12, 24, 48)
SKIP_DIRS = {"demos", "theoryExercises"}  # test files, not music
SKIP_SUFFIXES = {".rntxt"}  # roman-numeral analyses: chords with no real notes
MIN_UNITS = 5  # corpus folders with fewer pieces are pooled as "other"
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
                pitch = getattr(sub, "pitch", None)
                key = pitch.ps if pitch is not None else math.nan  # nan: never matches
                if kind in ("stop", "continue") and key in open_ties:
                    open_ties[key][1] += dur  # continuation of a tied note
                    if kind == "stop":
                        del open_ties[key]
                    continue
                notes.append([onset, dur])
                if kind in ("start", "continue"):
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
    return sum(n for (o, d), n in counts.items() if g % o == 0 and g % d == 0)


def kind_of(den: int) -> str:
    """What rhythm a quarter-length denominator outside the 24 grid comes from."""
    odd = den
    while odd % 2 == 0 or odd % 3 == 0:
        odd //= 2 if odd % 2 == 0 else 3
    names = {5: "quintuplet", 7: "septuplet", 11: "11-tuplet", 13: "13-tuplet"}
    if odd > 1:
        return names.get(odd, f"{odd}-tuplet") + ("s" if odd == den else "s, subdivided")
    if den % 9 == 0:
        return "nested triplets"
    return "64th notes or finer" + (" (triplet)" if den % 3 == 0 else "")


def report(
    pieces: list[tuple[Unit, Counter[DenPair]]],
    failed: Counter[str],
    secs: float,
    args: argparse.Namespace,
) -> str:
    total: Counter[DenPair] = sum((c for _, c in pieces), Counter())
    n = sum(total.values())
    out = [
        "# Grid measurement on the music21 corpus",
        "",
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, music21 {music21.__version__}",
        f"- sample: {len(pieces)} pieces parsed ({sum(failed.values())} failed to parse, "
        f"skipped), {n} notes; seed {args.seed}; {secs:.0f} s with {args.jobs} jobs",
        f"- command: `python {' '.join(sys.argv)}`",
        "",
        "## All notes, by grid (G steps per quarter note)",
        "",
        "| G | steps per 4/4 bar | onsets on grid | durations on grid | notes with both "
        "| pieces fully on grid |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for g in GRIDS:
        on = sum(k for (o, _), k in total.items() if g % o == 0)
        du = sum(k for (_, d), k in total.items() if g % d == 0)
        whole = sum(both(c, g) == sum(c.values()) for _, c in pieces)
        out.append(
            f"| {g} | {4 * g} | {pct(on, n)} | {pct(du, n)} | {pct(both(total, g), n)} "
            f"| {pct(whole, len(pieces))} |"
        )
    # Notes off the chosen grid, by the denominator their onset/duration needs.
    off: Counter[int] = Counter()
    off_pieces: defaultdict[int, set[str]] = defaultdict(set)
    for unit, counts in pieces:
        for (o, d), k in counts.items():
            dens = [x for x in (o, d) if CHOSEN % x]
            if dens:
                den = math.lcm(*dens)
                off[den] += k
                off_pieces[den].add(f"{unit.path}#{unit.number}")
    out += [
        "",
        f"## Notes off the G={CHOSEN} grid, by denominator (quarter lengths)",
        "",
        "| denominator | rhythm | notes | share of all notes | pieces | smallest G holding it |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for den, k in off.most_common():
        fit = next((str(g) for g in GRIDS if g % den == 0), f"none (needs {math.lcm(CHOSEN, den)})")
        out.append(
            f"| 1/{den} | {kind_of(den)} | {k} | {pct(k, n)} | {len(off_pieces[den])} | {fit} |"
        )
    # Per collection.
    cols = " | ".join(f"both on {g}" for g in BY_COLLECTION)
    out += [
        "",
        "## Per collection (share of notes with onset and duration on grid)",
        "",
        f"| collection | pieces | failed | notes | {cols} | pieces fully on {CHOSEN} |",
        "|---|---:|---:|---:|" + "---:|" * (len(BY_COLLECTION) + 1),
    ]
    groups: defaultdict[str, list[Counter[DenPair]]] = defaultdict(list)
    for unit, counts in pieces:
        groups[unit.collection].append(counts)
    for name in sorted(groups.keys() | failed.keys()):
        cs = groups[name]
        sub: Counter[DenPair] = sum(cs, Counter())
        m = sum(sub.values())
        shares = " | ".join(pct(both(sub, g), m) for g in BY_COLLECTION)
        whole = sum(both(c, CHOSEN) == sum(c.values()) for c in cs)
        out.append(
            f"| {name} | {len(cs)} | {failed[name]} | {m} | {shares} | {pct(whole, len(cs))} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-works", type=int, default=400, help="pieces to sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="parallel parser processes")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("grid_results.md"))
    args = ap.parse_args()
    start = time.perf_counter()
    units = sample(args.max_works, args.seed)
    # Big files first so that the slowest parse does not come last.
    units.sort(key=lambda u: -os.path.getsize(u.path) / (1 + 1000 * (u.number is not None)))
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
