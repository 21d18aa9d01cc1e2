"""Continuation quality: does a continuation of 4 bars resemble the piece's true next 4 bars?

    nice -n 10 .venv/bin/python bench/quality.py                     # prints the section
    nice -n 10 .venv/bin/python bench/quality.py --pieces 8 --samples 2 --write

Test pieces of two sources (music21's test split, from the built corpus data/corpus, and
the Debian band packages' test split, from a corpus of the nine allowed packages built
with the project's split rule into bench/.cache/quality-band unless --band-corpus names
one) with at least 12 bars and a note in bars 9-12, chosen by a seeded shuffle. Each is cut
to its header and first 8 bars (the seed) and continued for 4 bars, under the same
constraints for every continuer: `Constraints(bars=4)` (the seed's instruments, the
project's decoding defaults) and `Sampling()` (the project's sampling defaults), through
`generate()`, its masks, post-check and retries. The continuers:

* model: the shipped model (`--model DIR` for another);
* markov-3: the order-3 token Markov model of `music_lm.training.baselines`, fitted on the
  training splits of both corpora, wrapped here as a model that `generate()` steps like a
  network (its next-token log probabilities as the logits), so it samples under the same
  masks, temperature and top-p;
* repeat-last-bar: the seed's last bar, 4 times (the token ids of that bar repeated,
  each accepted by the grammar; `end` after them where the grammar allows it: not where a
  declared track has not played yet); deterministic: 1 sample.

Descriptors, each comparing the notes that start in bars 9-12 of a continuation (C) with
those of the true piece (T); a "note" is a pitch or drum token, "melodic" a pitch token:

* pitch-class overlap (higher is better): the histograms of the melodic notes' pitch
  classes (pitch mod 12, one count per note), each normalised to sum 1; the overlap is
  sum over the 12 classes of min(C, T): 1 for the same distribution, 0 for disjoint ones.
  Both without melodic notes: 1; one without: 0.
* velocity overlap (higher is better): the same overlap on the velocities of all notes,
  in 16 bins of 8 (velocity // 8, 127 in the last bin).
* drum-onset similarity (higher is better; only pieces whose seed declares a drum track):
  per drum key k and 16th step s of the bar (s = grid steps from the bar line // 6, the
  grid having 24 steps a quarter note), the number of onsets of k at step s over the 4
  bars, folded onto one bar; the cosine of C's and T's vectors. Both without drum notes:
  1; one without: 0.
* note density: notes per bar (all notes, drums included); the ratio C / T (T has at least
  one note: the pieces are chosen so). The table gives the geometric mean of the ratios
  and the mean |log2 ratio| (lower is better; a ratio below 1/64, a silent C, counts as
  1/64).
* pitch-range error (lower is better): (|lowest C - lowest T| + |highest C - highest T|)
  / 2 in semitones, over the melodic notes; left out of the mean where either has no
  melodic note (the counts are in the table).

Means are over pieces and samples, ± the standard error of the mean of the per-piece
means (the pieces are few: a difference within it says little). "beats markov" compares
the model's mean with the Markov model's in the descriptor's better direction (a tie is
not a win). The "## Continuation quality" section of bench/RESULTS.md is written from it
(`--write`); `--json PATH` keeps every continuation's descriptors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from music_lm.tokens.grammar import GrammarError, GrammarState  # noqa: E402
from music_lm.tokens.rules import BAR, END  # noqa: E402
from music_lm.tokens.vocab import VOCAB  # noqa: E402

SEED_BARS = 8
NEW_BARS = 4
GRID_PER_16TH = 6  # the token grid has 24 steps a quarter note
VELOCITY_BIN = 8
MIN_RATIO = 1 / 64  # a silent continuation's density ratio counts as this
_FAM = VOCAB.family_of
_VAL = VOCAB.values


# ---- notes of a window of bars ----


@dataclass(frozen=True)
class BarNote:
    """One note of a window of bars: its bar (0-based in the window), its onset in grid steps
    from that bar's line, the bar's length in steps, its pitch (or drum key), its velocity."""

    bar: int
    onset_step: int
    bar_steps: int
    pitch: int
    velocity: int
    drum: bool


def notes_in_bars(ids: Sequence[int], first_bar: int, bars: int) -> list[BarNote]:
    """The notes that start in bars first_bar .. first_bar + bars - 1 (1-based, counting
    `bar` tokens) of the token ids `ids`, read with the grammar's own parser."""
    g = GrammarState()
    notes: list[BarNote] = []
    last = first_bar + bars - 1
    for token in ids:
        g.advance(int(token))
        if g.bar_index > last:
            break
        family = _FAM[token]
        if family in ("pitch", "drum") and g.bar_index >= first_bar:
            notes.append(
                BarNote(
                    bar=g.bar_index - first_bar,
                    onset_step=g.onset_tick - g.bar_start,
                    bar_steps=g.bar_length,
                    pitch=int(_VAL[token]),
                    velocity=int(g.velocities[g.part_track]),
                    drum=family == "drum",
                )
            )
    return notes


# ---- descriptors ----


def histogram_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Sum over bins of min(a, b), each histogram normalised to sum 1: 1 for the same
    distribution, 0 for disjoint ones. Both empty: 1; one empty: 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"histograms of different shapes: {a.shape} and {b.shape}")
    total_a, total_b = a.sum(), b.sum()
    if total_a == 0 or total_b == 0:
        return 1.0 if total_a == total_b else 0.0
    return float(np.minimum(a / total_a, b / total_b).sum())


def pitch_class_histogram(notes: Sequence[BarNote]) -> np.ndarray:
    """Counts of the melodic notes' pitch classes (pitch mod 12)."""
    return np.bincount([n.pitch % 12 for n in notes if not n.drum], minlength=12)


def velocity_histogram(notes: Sequence[BarNote]) -> np.ndarray:
    """Counts of all notes' velocities in 16 bins of 8 (127 in the last)."""
    bins = [min(n.velocity // VELOCITY_BIN, 15) for n in notes]
    return np.bincount(bins, minlength=128 // VELOCITY_BIN)


def pitch_class_overlap(made: Sequence[BarNote], true: Sequence[BarNote]) -> float:
    return histogram_overlap(pitch_class_histogram(made), pitch_class_histogram(true))


def velocity_overlap(made: Sequence[BarNote], true: Sequence[BarNote]) -> float:
    return histogram_overlap(velocity_histogram(made), velocity_histogram(true))


def note_density(notes: Sequence[BarNote], bars: int) -> float:
    """Notes (drums included) per bar."""
    if bars < 1:
        raise ValueError(f"a density needs at least one bar, got {bars}")
    return len(notes) / bars


def density_ratio(made: Sequence[BarNote], true: Sequence[BarNote], bars: int) -> float:
    """Notes per bar of `made` over those of `true` (which must have a note)."""
    if not true:
        raise ValueError("the true bars have no note: no density ratio")
    return note_density(made, bars) / note_density(true, bars)


def density_error(ratio: float) -> float:
    """|log2 ratio|, a ratio below MIN_RATIO (a silent continuation) counted as MIN_RATIO."""
    return abs(math.log2(max(ratio, MIN_RATIO)))


def drum_onset_vector(notes: Sequence[BarNote]) -> Counter[tuple[int, int]]:
    """Onsets per (drum key, 16th step of the bar), the bars folded onto one."""
    return Counter((n.pitch, n.onset_step // GRID_PER_16TH) for n in notes if n.drum)


def drum_onset_similarity(made: Sequence[BarNote], true: Sequence[BarNote]) -> float:
    """Cosine of the drum-onset vectors. Both without drum notes: 1; one without: 0."""
    a, b = drum_onset_vector(made), drum_onset_vector(true)
    if not a or not b:
        return 1.0 if not a and not b else 0.0
    dot = sum(count * b[key] for key, count in a.items())
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm


def pitch_range(notes: Sequence[BarNote]) -> tuple[int, int] | None:
    """(lowest, highest) melodic pitch, or None without a melodic note."""
    pitches = [n.pitch for n in notes if not n.drum]
    return (min(pitches), max(pitches)) if pitches else None


def pitch_range_error(made: Sequence[BarNote], true: Sequence[BarNote]) -> float | None:
    """Mean of |lowest difference| and |highest difference| in semitones; None where
    either has no melodic note."""
    a, b = pitch_range(made), pitch_range(true)
    if a is None or b is None:
        return None
    return (abs(a[0] - b[0]) + abs(a[1] - b[1])) / 2


def describe(made: Sequence[BarNote], true: Sequence[BarNote], bars: int,
             drums: bool) -> dict[str, float | None]:  # fmt: skip
    """Every descriptor of one continuation against the true bars (`drums`: the seed has a
    drum track; else the drum similarity is None)."""
    ratio = density_ratio(made, true, bars)
    return {
        "pitch_class": pitch_class_overlap(made, true),
        "velocity": velocity_overlap(made, true),
        "drums": drum_onset_similarity(made, true) if drums else None,
        "density_ratio": ratio,
        "density_error": density_error(ratio),
        "range_error": pitch_range_error(made, true),
    }


# (key, label, higher is better) in table order
DESCRIPTORS = (
    ("pitch_class", "pitch-class overlap ↑", True),
    ("velocity", "velocity overlap ↑", True),
    ("drums", "drum-onset similarity ↑ (pieces with drums)", True),
    ("density_error", "density \\|log2 ratio\\| ↓", False),
    ("density_ratio", "density ratio (geometric mean; 1 is right)", None),
    ("range_error", "pitch-range error, semitones ↓", False),
)


# ---- the Markov model as a network generate() can step ----


class _Rows(list):
    """The Markov "cache": each row's last tokens, with the two batch operations
    `generation.models._Runner` asks of a transformers cache (variants share one prefill
    of the seed; finished rows leave the batch)."""

    def batch_repeat_interleave(self, repeats: int) -> None:
        self[:] = [list(row) for row in self for _ in range(repeats)]

    def batch_select_indices(self, index) -> None:
        self[:] = [self[i] for i in index.tolist()]


class _MarkovNet:
    """An `NgramModel` behind the interface `generation.models._Runner` calls: forward()
    with the ids, attention mask, positions and cache of a batch gives each row's next-token
    log probabilities as the logits; the "cache" is each row's last `order` tokens."""

    def __init__(self, ngram) -> None:
        import torch

        self.ngram = ngram
        self.order = ngram.order
        self._weight = torch.zeros(1)  # where the inputs go: the CPU
        self.config = SimpleNamespace(n_positions=1 << 20)  # no window: it reads 3 tokens

    def parameters(self):
        return iter([self._weight])

    def next_log_probs(self, context: Sequence[int]) -> np.ndarray:
        """log P(w | the last `order` tokens of context) for every id w."""
        k = self.order
        context = list(context)[-k:]
        size = self.ngram.vocab_size
        blocks = np.empty((size, len(context) + 1), dtype=np.int64)
        blocks[:, :-1] = context
        blocks[:, -1] = np.arange(size)
        # each block is `context w`: w's log prob sits at the block's last position - 1
        # (log_probs scores stream[1:]), read with exactly the context before it
        width = len(context) + 1
        return self.ngram.log_probs(blocks.ravel())[width - 2 :: width]

    def __call__(self, input_ids, attention_mask, cache=None, **_kwargs):
        import torch

        if cache is None:
            rows = []
            for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
                rows.append([t for t, m in zip(ids, mask, strict=True) if m][-self.order :])
        else:
            new = input_ids[:, -1].tolist()
            rows = [[*old, t][-self.order :] for old, t in zip(cache, new, strict=True)]
        logits = torch.from_numpy(np.stack([self.next_log_probs(r) for r in rows])).float()
        return SimpleNamespace(cache=_Rows(rows), logits=logits[:, None, :], attentions=None)


@dataclass
class MarkovLoaded:
    """What `generate(loaded=...)` takes for a model: a `LoadedModel` look-alike."""

    model: _MarkovNet
    path: str
    meta: dict = field(default_factory=dict)
    token_map: object = None

    def __post_init__(self) -> None:
        from music_lm.model.folder import TokenMap

        self.token_map = TokenMap()

    @property
    def context(self) -> int:
        return self.model.config.n_positions


def fit_markov(streams: Sequence[np.ndarray], order: int = 3):
    from music_lm.training.baselines import NgramModel

    return NgramModel(order, len(VOCAB)).fit(streams)


# ---- the repeat baseline ----


def repeat_last_bar(seed: Sequence[int], bars: int = NEW_BARS) -> list[int] | None:
    """The seed and its last bar `bars` times more, then `end` where the grammar allows one
    there (it does not when a track the header declares has not played yet: the notes of
    the new bars are what is compared, so such a piece keeps its repeated bars); None when
    the grammar refuses a token of the repeated bars."""
    seed = list(seed)
    start = len(seed) - 1 - seed[::-1].index(BAR)
    ids = seed + seed[start:] * bars
    g = GrammarState()
    try:
        for token in ids:
            g.advance(token)
    except GrammarError:
        return None
    if any(lo <= END < hi for lo, hi in g.allowed_ranges()):
        ids.append(END)
    return ids


# ---- pieces ----


def bar_count(ids: Sequence[int]) -> int:
    return int(np.count_nonzero(np.asarray(ids) == BAR))


def chosen_pieces(corpus, count: int, seed: int) -> list[tuple[str, list[int]]]:
    """Up to `count` test pieces of `corpus` with 12 bars or more and a note in bars 9-12,
    by a seeded shuffle: (name, ids)."""
    from music_lm.generation.seeds import cut_seed

    order = corpus.split("test")
    random.Random(seed).shuffle(order)
    out = []
    for index in order:
        ids = [int(t) for t in corpus.ids(index)]
        if bar_count(ids) < SEED_BARS + NEW_BARS:
            continue
        if not notes_in_bars(cut_seed(ids, SEED_BARS + NEW_BARS), SEED_BARS + 1, NEW_BARS):
            continue
        out.append((corpus.pieces[index].name, ids))
        if len(out) == count:
            break
    return out


def band_corpus(folder: Path):
    """The corpus of the nine Debian packages in `folder`, built there (with the project's
    split rule) when it is not yet."""
    from music_lm.corpus.dataset import Corpus

    if not (folder / "manifest.json").is_file():
        from music_lm.corpus.build import build_corpus
        from music_lm.corpus.config import BuildConfig
        from music_lm.corpus.debian import ALLOWED_PACKAGES, default_cache_dir

        print(f"building the band corpus in {folder}", file=sys.stderr)
        config = BuildConfig(sources=tuple(f"debian:{p}" for p in ALLOWED_PACKAGES))
        debian = REPO / default_cache_dir()
        build_corpus(config, folder, debian_dir=debian if debian.is_dir() else None)
    return Corpus(folder)


# ---- running ----


def continue_piece(ids: list[int], continuers: dict, samples: int, random_seed: int) -> dict:
    """Per continuer: the descriptors of each of its continuations, or the reason it
    made none."""
    from music_lm.generation.constraints import Constraints
    from music_lm.generation.runner import generate
    from music_lm.generation.seeds import cut_seed
    from music_lm.generation.settings import GenerationError, Sampling

    seed = cut_seed(ids, SEED_BARS)
    true = notes_in_bars(ids, SEED_BARS + 1, NEW_BARS)
    drums = any(_FAM[t] == "inst" and _VAL[t] == -1 for t in seed[: seed.index(BAR)])
    out: dict[str, list | str] = {}
    for name, loaded in continuers.items():
        started = time.perf_counter()
        try:
            made = generate(seed, constraints=Constraints(bars=NEW_BARS), sampling=Sampling(),
                            models=[name], loaded=[loaded], variants=samples,
                            random_seed=random_seed, time_limit_s=1800)  # fmt: skip
        except GenerationError as err:
            out[name] = f"no continuation: {err}"
            continue
        out[name] = [
            describe(notes_in_bars(v.ids, SEED_BARS + 1, NEW_BARS), true, NEW_BARS, drums)
            for v in made.variants
        ]
        print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    repeated = repeat_last_bar(seed)
    out["repeat-last-bar"] = (
        [describe(notes_in_bars(repeated, SEED_BARS + 1, NEW_BARS), true, NEW_BARS, drums)]
        if repeated is not None
        else "the grammar refuses the repeated bars"
    )
    return out


def summary(results: list[dict], names: Sequence[str]) -> dict[str, dict[str, tuple]]:
    """Per continuer and descriptor: (mean over pieces and samples, number of values,
    standard error of the mean of the per-piece means, or None under 2 pieces). The
    density ratio's mean and error are of log2 ratios, the mean given back as a ratio."""
    table: dict[str, dict[str, tuple]] = {}
    for name in names:
        table[name] = {}
        for key, _label, _higher in DESCRIPTORS:
            per_piece = []
            for piece in results:
                if not isinstance(piece[name], list):
                    continue
                values = [r[key] for r in piece[name] if r[key] is not None]
                if key == "density_ratio":
                    values = [math.log2(max(v, MIN_RATIO)) for v in values]
                if values:
                    per_piece.append(values)
            flat = [v for values in per_piece for v in values]
            if not flat:
                table[name][key] = (None, 0, None)
                continue
            mean = sum(flat) / len(flat)
            means = [sum(v) / len(v) for v in per_piece]
            error = float(np.std(means, ddof=1) / math.sqrt(len(means))) if len(means) > 1 else None
            if key == "density_ratio":
                mean = 2**mean
            table[name][key] = (mean, len(flat), error)
    return table


def source_table(title: str, pieces: list[str], results: list[dict], names: Sequence[str],
                 samples: int) -> list[str]:  # fmt: skip
    table = summary(results, names)
    model, markov = names[0], names[1]
    lines = [
        f"**{title}**: {len(pieces)} test pieces, {samples} samples each "
        f"(repeat-last-bar: 1): {', '.join(pieces)}.",
        "",
        "| descriptor | " + " | ".join(names) + " | model beats markov |",
        "|---|" + "---|" * len(names) + "---|",
    ]
    beats_all = True
    for key, label, higher in DESCRIPTORS:
        cells = []
        for name in names:
            mean, count, error = table[name][key]
            spread = "" if error is None or key == "density_ratio" else f" ± {error:.3f}"
            cells.append("–" if mean is None else f"{mean:.3f}{spread} (n={count})")
        a, b = table[model][key][0], table[markov][key][0]
        if higher is None or a is None or b is None:
            verdict = "–"
        else:
            wins = a > b if higher else a < b
            beats_all &= wins
            verdict = "**yes**" if wins else ("tie" if a == b else "no")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    failed = {n: sum(1 for r in results if isinstance(r[n], str)) for n in names}
    if any(failed.values()):
        lines += ["", "No continuation: " + ", ".join(f"{n} {c}" for n, c in failed.items())]
    lines += ["", f"Model ahead of markov-3 on every descriptor: {'yes' if beats_all else 'no'}."]
    return lines


def cpu_name() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return "cpu"


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=REPO)  # fmt: skip
    return done.stdout.strip() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="a model folder (default: shipped)")
    parser.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus",
                        help="the built music21 corpus")  # fmt: skip
    parser.add_argument(
        "--band-corpus",
        type=Path,
        default=BENCH / ".cache" / "quality-band",
        help="the corpus of the Debian packages (built there if missing)",
    )
    parser.add_argument("--pieces", type=int, default=12, help="test pieces per source")
    parser.add_argument("--samples", type=int, default=3, help="continuations per piece")
    parser.add_argument("--seed", type=int, default=0, help="the selection's and sampling's")
    parser.add_argument("--write", action="store_true", help="write the section to RESULTS.md")
    parser.add_argument("--json", type=Path, help="keep every continuation's descriptors here")
    args = parser.parse_args()

    from music_lm.corpus.dataset import Corpus
    from music_lm.model.folder import load_model
    from music_lm.training.baselines import split_stream

    started = time.perf_counter()
    music21 = Corpus(args.corpus)
    band = band_corpus(args.band_corpus)
    fit_started = time.perf_counter()
    markov = fit_markov([split_stream(music21, "train"), split_stream(band, "train")])
    fit_seconds = time.perf_counter() - fit_started
    print(f"markov-3 fitted on {markov.train_tokens:,} tokens in {fit_seconds:.0f} s",
          file=sys.stderr)  # fmt: skip
    empty = tempfile.mkdtemp(prefix="markov-")  # its "folder": no weights to hash
    continuers = {
        "model": load_model(args.model),
        "markov-3": MarkovLoaded(_MarkovNet(markov), empty),
    }
    names = ["model", "markov-3", "repeat-last-bar"]
    sections = []
    kept: dict[str, list] = {}
    for title, corpus in (("music21 (test split)", music21),
                          ("Debian band packages (test split)", band)):  # fmt: skip
        pieces = chosen_pieces(corpus, args.pieces, args.seed)
        results = []
        for number, (name, ids) in enumerate(pieces):
            print(f"{title}: {number + 1}/{len(pieces)} {name}", file=sys.stderr)
            results.append(continue_piece(ids, continuers, args.samples, args.seed + number))
        kept[title] = [{"piece": n, **r} for (n, _), r in zip(pieces, results, strict=True)]
        sections.append(source_table(title, [n for n, _ in pieces], results, names,
                                     args.samples))  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    lines = [
        "## Continuation quality",
        "",
        f"`bench/quality.py --pieces {args.pieces} --samples {args.samples} --seed {args.seed}`"
        f", {datetime.date.today()}, commit {commit()}, {cpu_name()}, 2 cores shared with "
        f"other work ({minutes:.0f} min). Each test piece is cut to its first {SEED_BARS} "
        f"bars and continued for {NEW_BARS}, under the same constraints for all "
        "(`Constraints(bars=4)`: the seed's instruments, the decoding defaults; `Sampling()`"
        "); the notes of the new bars are compared with the piece's true bars "
        f"{SEED_BARS + 1}-{SEED_BARS + NEW_BARS} (the descriptors are defined in the "
        f"script's docstring). model: `{args.model}`; markov-3: the order-3 token Markov "
        f"model fitted on the training splits of both corpora ({markov.train_tokens:,} "
        "tokens), sampled through `generate()` under the same masks; repeat-last-bar: the "
        "seed's last bar 4 times. Means over pieces and samples ± the standard error over "
        "pieces (n: the values averaged).",
    ]
    for block in sections:
        lines += ["", *block]
    lines += [
        "",
        "Reading it: music21's pieces are written with almost one velocity, so their "
        "velocity overlap is near 1 for every continuer and says little; repeat-last-bar "
        "is no target to beat (band music repeats its bars, so it wins on drums, velocity "
        "and density), but it shows how far a continuer is from the obvious answer.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json:
        args.json.write_text(json.dumps(kept, indent=1) + "\n")
    if args.write:
        from train import write_section

        write_section(text)


if __name__ == "__main__":
    main()
