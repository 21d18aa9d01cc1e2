"""Benchmark what fill-in-the-middle buys: bits per note of a gap's true bars given both
sides, against given only what came before.

    .venv/bin/python bench/infill_bits.py [--model default] [--model runs/X ...]
        [--data data/corpus] [--regions 400] [--out FILE]

Regions of 1 to 4 bars drawn (seeded) from the test split's pieces, each with at least one
bar before and after it; the music21 pieces and the Debian packages' pieces are reported
apart. Every model scores the same regions: before only (prefix, then the region, as a
continuation reads it) and, for a model trained on the form, both sides (prefix, `hole`,
suffix, `fill`, then the region, as `music-lm infill --bars` prompts it). Only the region's
words are scored (music_lm/training/fim_scoring.py). Writes a markdown section.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from music_lm.corpus.dataset import Corpus  # noqa: E402
from music_lm.generation.infill import knows_fim  # noqa: E402
from music_lm.model.folder import load_model  # noqa: E402
from music_lm.tokens.rules import BAR  # noqa: E402
from music_lm.training.fim_scoring import score_middles  # noqa: E402

MAX_REGION_BARS = 4


def draw_regions(corpus: Corpus, count: int, seed: int, context: int) -> dict[str, list]:
    """Up to `count` regions per group (music21, Debian), seeded: (ids, start, stop)."""
    rng = random.Random(seed)
    groups: dict[str, list] = {"music21": [], "debian": []}
    pieces = corpus.split("test")
    rng.shuffle(pieces)
    for index in pieces:
        group = "music21" if corpus.pieces[index].source == "music21" else "debian"
        if len(groups[group]) >= count:
            continue
        ids = [int(t) for t in corpus.ids(index)]
        bars = [i for i, t in enumerate(ids) if t == BAR]
        if len(bars) < 3:
            continue
        first = rng.randrange(1, len(bars) - 1)
        length = rng.randint(1, min(MAX_REGION_BARS, len(bars) - 1 - first))
        start, stop = bars[first], bars[first + length]
        if stop - start > context // 3:
            continue  # a region too long to leave room for both sides
        groups[group].append((ids, start, stop))
    return groups


def run(models: list[str], data: Path, count: int, seed: int) -> tuple[list[dict], dict]:
    corpus = Corpus(data)
    rows = []
    sizes = {}
    for name in models:
        loaded = load_model(name, device="cpu")
        regions = draw_regions(corpus, count, seed, loaded.context)
        sizes = {group: len(found) for group, found in regions.items()}
        fim = knows_fim(loaded)
        for group, found in regions.items():
            before = score_middles(loaded, found, both_sides=False)
            both = score_middles(loaded, found, both_sides=True) if fim else None
            rows.append({"model": name, "group": group, "before": before, "both": both})
    return rows, sizes


def section(rows: list[dict], sizes: dict, args, seconds: float) -> str:
    lines = [
        "## Infill: bits per note of the gap, both sides against before only",
        "",
        f"`bench/infill_bits.py --data {args.data} --regions {args.regions}`: regions of 1 to "
        f"{MAX_REGION_BARS} bars drawn from the test split (seed {args.seed}; "
        + ", ".join(f"{n} {g}" for g, n in sizes.items())
        + f"), each scored on its own words only; {seconds:.0f} s on the CPU.",
        "",
        "| model | pieces | notes | before only (bits/note) | both sides (bits/note) "
        "| both / before |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        before, both = row["before"], row["both"]
        if both is None:
            tail = "(not trained on the form) | |"
        else:
            ratio = both.bits_per_note / before.bits_per_note
            tail = f"{both.bits_per_note:.2f} | {ratio:.2f}x |"
        lines.append(f"| {row['model']} | {row['group']} | {before.notes:,} | "
                     f"{before.bits_per_note:.2f} | {tail}")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=None)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "corpus")
    parser.add_argument("--regions", type=int, default=400, help="per group")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    rows, sizes = run(args.model or ["default"], args.data, args.regions, args.seed)
    text = section(rows, sizes, args, time.perf_counter() - started)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
