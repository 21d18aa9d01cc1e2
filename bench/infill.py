"""Benchmark infill's decoding speed beside generate's, in the same run.

    .venv/bin/python bench/infill.py [--repeats 3] [--bars 4] [--out FILE]

The shipped model on the CPU, each piece of midi_in/: `generate()` continues the piece's
first 4 bars by `--bars` bars, and `infill()` redraws track 1 over the same bars (bars 5 to
4 + `--bars`), keeping the others; then `infill()` in bars mode (every track) over them.
The runs alternate, with the same random seeds, so a busy machine slows them alike.

ms per token: the sampling's seconds over the tokens it stepped the model through (for
infill, the kept tracks' forced words too: each is one model step, as each new word is).
The model is loaded once, before the timing. Writes a markdown section to stdout (or
--out).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from music_lm.generation.constraints import Constraints  # noqa: E402
from music_lm.generation.infill import infill  # noqa: E402
from music_lm.generation.runner import generate  # noqa: E402
from music_lm.model.folder import load_model  # noqa: E402

SEED_BARS = 4


def ms_per_token(generation) -> float:
    return 1000.0 / generation.tokens_per_s


def run(repeats: int, bars: int) -> dict[str, list[float]]:
    loaded = [load_model("default", device="cpu")]
    pieces = sorted((ROOT / "midi_in").glob("*.mid"))
    region = f"{SEED_BARS + 1}-{SEED_BARS + bars}"
    times: dict[str, list[float]] = {"generate": [], "infill (track 1)": [], "infill (bars)": []}
    # a warm-up, untimed: the first call pays for torch's first kernels
    generate(pieces[0], seed_bars=2, constraints=Constraints(bars=1), loaded=loaded,
             device="cpu", random_seed=0)  # fmt: skip
    for repeat in range(repeats):
        for piece in pieces:
            seed = 1000 * repeat + pieces.index(piece)
            common = {"loaded": loaded, "device": "cpu", "random_seed": seed}
            take = generate(piece, seed_bars=SEED_BARS, constraints=Constraints(bars=bars),
                            **common)  # fmt: skip
            times["generate"].append(ms_per_token(take))
            take = infill(piece, "1", bars=region, **common)
            times["infill (track 1)"].append(ms_per_token(take))
            take = infill(piece, None, bars=region, **common)
            times["infill (bars)"].append(ms_per_token(take))
    return times


def section(times: dict[str, list[float]], repeats: int, bars: int, seconds: float) -> str:
    anchor = statistics.median(times["generate"])
    lines = [
        "## Infill: ms per token beside generate",
        "",
        f"`bench/infill.py --repeats {repeats} --bars {bars}`: the shipped model on the CPU "
        f"(one decoding thread), each of the {len(times['generate']) // repeats} pieces of "
        f"midi_in/ continued from its first {SEED_BARS} bars by {bars} bars (generate), its "
        f"track 1 redrawn over those bars (infill), and every track redrawn over them (infill, "
        f"bars mode), alternating, {repeats} rounds; {seconds:.0f} s in all.",
        "",
        "| run | median ms per token | min | max | vs generate |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.1f} | {min(values):.1f} | {max(values):.1f} | "
                     f"{median / anchor:.2f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bars", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    times = run(args.repeats, args.bars)
    text = section(times, args.repeats, args.bars, time.perf_counter() - started)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
