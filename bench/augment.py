"""Benchmark window augmentation: training windows per second with and without it.

    .venv/bin/python bench/augment.py                  # data/corpus, 1,024-token windows
    .venv/bin/python bench/augment.py --data data/corpus --windows 300 --rounds 3

Each configuration draws `--windows` windows of the train split (transposition ± 5, as
training does) from a fresh sampler with the same seed; the configurations take turns,
`--rounds` times, and the median is reported. The anchor is the sampler without
augmentation in the same run. Also checks every augmented window with the grammar.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from music_lm.corpus.augment import Augmentation  # noqa: E402
from music_lm.corpus.dataset import Corpus, WindowSampler  # noqa: E402
from music_lm.tokens.grammar import GrammarState  # noqa: E402

DEFAULTS = {
    "velocity_level": 3,
    "velocity_ramp": 4,
    "velocity_jitter": 1,
    "velocity_jitter_share": 0.25,
    "revoice": 0.3,
    "tempo_percent": 3.0,
}  # fmt: skip (TrainConfig's defaults)
CONFIGS = {
    "none (anchor)": Augmentation(),
    "velocity level ± 3 and ramp ± 4": Augmentation(velocity_level=3, velocity_ramp=4),
    "velocity jitter ± 1": Augmentation(velocity_jitter=1),
    "revoice 0.3": Augmentation(revoice=0.3),
    "tempo ± 3 %": Augmentation(tempo_percent=3.0),
    "all, the defaults": Augmentation(**DEFAULTS),
}


def valid(window: list[int]) -> bool:
    state = GrammarState()
    for token in window:
        if state.done:
            state = GrammarState()
        if not state.is_allowed(token):
            return False
        state.advance(token)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "corpus"))
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    corpus = Corpus(args.data)
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    invalid = 0
    for _ in range(args.rounds):
        for name, augment in CONFIGS.items():
            sampler = WindowSampler(corpus, "train", args.context, transpose=5, seed=0,
                                    augment=augment)  # fmt: skip
            start = time.perf_counter()
            windows = [sampler.window() for _ in range(args.windows)]
            rates[name].append(args.windows / (time.perf_counter() - start))
            invalid += sum(not valid(w.tolist()) for w in windows)
    anchor = statistics.median(rates["none (anchor)"])
    print(f"{platform.processor() or platform.machine()}, {corpus}, context {args.context}, "
          f"{args.windows} windows x {args.rounds} rounds; invalid windows: {invalid}")  # fmt: skip
    print("| augmentation | windows/s | vs anchor | ms / window |")
    print("|---|---:|---:|---:|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:,.0f} | {rate / anchor:.2f} | {1000 / rate:.2f} |")


if __name__ == "__main__":
    main()
