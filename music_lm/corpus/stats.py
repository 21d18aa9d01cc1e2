"""Describe a built corpus: its manifest as a table, and a PNG of its distributions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from music_lm.corpus.dataset import SPLITS, Corpus
from music_lm.midi.gm import PITCH_CLASS_NAMES
from music_lm.tokens.codec import decode
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB

_PITCH = VOCAB.ranges["pitch"]


def _n(value: int) -> str:
    return f"{value:,}"


def manifest_table(manifest: dict) -> str:
    """Pieces, notes and tokens per source and split, with failures and duplicates."""
    head = ("source", "split", "pieces", "notes", "tokens", "failed", "duplicates")
    rows: list[tuple[str, ...]] = []
    for source in manifest["sources"]:
        for i, split in enumerate(SPLITS):
            counts = source[split]
            extra = (_n(source["failed"]), _n(source["duplicates"])) if i == 0 else ("", "")
            rows.append((source["source"] if i == 0 else "", split, _n(counts["pieces"]),
                         _n(counts["notes"]), _n(counts["tokens"]), *extra))  # fmt: skip
    totals = manifest["splits"]
    failed = sum(s["failed"] for s in manifest["sources"])
    duplicates = sum(s["duplicates"] for s in manifest["sources"])
    for i, split in enumerate(SPLITS):
        extra = (_n(failed), _n(duplicates)) if i == 0 else ("", "")
        rows.append(("all" if i == 0 else "", split, _n(totals[split]["pieces"]),
                     _n(totals[split]["notes"]), _n(totals[split]["tokens"]), *extra))  # fmt: skip
    widths = [max(len(r[c]) for r in (head, *rows)) for c in range(len(head))]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [cell.rjust(w) for cell, w in zip(row[2:], widths[2:], strict=True)]
        return "  ".join(cells).rstrip()

    out = [line(head), "  ".join("-" * w for w in widths)]
    for row in rows:
        if row[0] == "all":
            out.append("  ".join("-" * w for w in widths))
        out.append(line(row))
    tokens = sum(totals[s]["tokens"] for s in SPLITS)
    out.append("")
    out.append(f"{_n(tokens)} tokens in {len(manifest['shards'])} uint16 shard(s) "
               f"({tokens * 2 / 2**20:.1f} MiB); built {manifest['built']} in "
               f"{manifest['build_seconds']:.1f} s")  # fmt: skip
    styles = ", ".join(f"{k} {_n(v)}" for k, v in manifest["styles"].items())
    out.append(f"styles (pieces): {styles}")
    return "\n".join(out)


def distributions(corpus: Corpus, sample: int = 2000, seed: int = 0) -> dict:
    """Pitch counts (all pieces), note durations in quarters (a sample of `sample` pieces,
    decoded), tokens per piece and pieces per style."""

    pitch_counts = np.zeros(128, dtype=np.int64)
    for name in {p.shard for p in corpus.pieces}:
        ids = np.asarray(corpus.shard(name))
        pitched = ids[(ids >= _PITCH.start) & (ids < _PITCH.stop)]
        pitch_counts += np.bincount(pitched - _PITCH.start, minlength=128)
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(len(corpus))[:sample]
    durations: list[float] = []
    for index in chosen:
        score = decode(corpus.text(int(index)))
        for track in score.tracks:
            if not track.is_drum:
                durations += [n.duration_tick / GRID_PER_QUARTER for n in track.notes]
    return {
        "pitch_counts": pitch_counts,
        "durations_quarters": np.array(durations, dtype=np.float64),
        "tokens_per_piece": np.array([p.tokens for p in corpus.pieces], dtype=np.int64),
        "styles": Counter(p.style for p in corpus.pieces).most_common(),
    }


def plot_stats(corpus: Corpus, png: Path, sample: int = 2000) -> dict:
    """Write a 2x2 PNG: pitches, note durations, tokens per piece, styles."""
    # matplotlib only when the PNG is drawn
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

    data = distributions(corpus, sample)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    title = f"{corpus.folder.name}: {len(corpus):,} pieces"
    fig.suptitle(title, fontsize=13)

    ax = axes[0, 0]
    counts = data["pitch_counts"]
    ax.bar(np.arange(128), counts, width=1.0, color="#3b6ea8")
    ticks = list(range(12, 128, 12))
    ax.set_xticks(ticks, [f"{PITCH_CLASS_NAMES[0]}{t // 12 - 1}" for t in ticks])
    used = np.flatnonzero(counts)
    if len(used):
        ax.set_xlim(max(0, used[0] - 3), min(127, used[-1] + 3))
    ax.set_title("pitches (melodic notes, all pieces)")
    ax.set_ylabel("notes")

    ax = axes[0, 1]
    durations = data["durations_quarters"]
    if len(durations):
        bins = np.geomspace(1 / GRID_PER_QUARTER, max(durations.max(), 8), 40)
        ax.hist(durations, bins=bins, color="#5a9e4b")
        ax.set_xscale("log", base=2)
        marks = [1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8]
        ax.set_xticks(marks, ["1/8", "1/4", "1/2", "1", "2", "4", "8"])
    pieces = min(len(corpus), sample)
    ax.set_title(f"note durations, quarter notes ({len(durations):,} notes of {pieces:,} pieces)")
    ax.set_ylabel("notes")

    ax = axes[1, 0]
    tokens = data["tokens_per_piece"]
    bins = np.geomspace(max(tokens.min(), 1), max(tokens.max(), 2), 40)
    ax.hist(tokens, bins=bins, color="#c07a2c")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"tokens per piece (median {int(np.median(tokens)):,})")
    ax.set_ylabel("pieces")

    ax = axes[1, 1]
    styles = data["styles"]
    names = [str(s) for s, _ in styles][::-1]
    values = [int(v) for _, v in styles][::-1]
    ax.barh(names, values, color="#8a5aa8")
    if max(values) > 50 * min(values):  # a few big collections beside small ones
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title("pieces per style")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,}", va="center", fontsize=8)

    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return data
