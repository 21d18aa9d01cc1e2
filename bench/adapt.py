"""Benchmark adaptation to the seed (`--adapt`): does a few steps of fine-tuning on a seed
lower the bits the model spends on that seed's own held-back last bars, and at what cost?

    nice .venv/bin/python bench/adapt.py            # prints the section
    nice .venv/bin/python bench/adapt.py --write    # and puts it in RESULTS.md

Seeds: the first 16 bars of band MIDI files (drums and several tracks) from the Debian
packages the project may read (/tmp/debs/x/...: simutrans-data, planetblupi-music-midi,
kobodeluxe-data, liquidwar-data). Each seed's last HELD_BACK bars are held back: the model
is adapted on the bars before them, and the held-back bars are scored before (the anchor:
no adaptation, the same run) and after. Every configuration (method x learning rate x steps)
is a run of its own from the shipped model, with the random seed fixed, timed as `generate`
runs it (2 torch threads unless said). Also: 1 vs 2 threads for the training steps, and a
whole `generate` of 8 new bars from the 16-bar seed with and without `--adapt`.
The "## Adaptation to the seed" section of RESULTS.md is written from it.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from music_lm.api import midi_to_text  # noqa: E402
from music_lm.generation.constraints import Constraints  # noqa: E402
from music_lm.generation.runner import generate  # noqa: E402
from music_lm.generation.seeds import cut_seed, seed_from_text  # noqa: E402
from music_lm.model.folder import load_model  # noqa: E402
from music_lm.training.adapt import DEFAULT_METHOD, LEARNING_RATES, adapt_model  # noqa: E402

DEBS = Path("/tmp/debs/x")
SIMUTRANS = "simutrans-data/usr/share/games/simutrans/music"
SEEDS = (
    f"{SIMUTRANS}/03-Sunday-drivers.mid",
    f"{SIMUTRANS}/09-Simupolitan-Swing.mid",
    f"{SIMUTRANS}/15-The-Wayside-Blues.mid",
    f"{SIMUTRANS}/19-Rockin-trucker.mid",
    f"{SIMUTRANS}/29-Runaway.mid",
    f"{SIMUTRANS}/48-Techno-movement.mid",
    "planetblupi-music-midi/usr/share/planetblupi/music/music001.mid",
    "planetblupi-music-midi/usr/share/planetblupi/music/music004.mid",
    "kobodeluxe-data/usr/share/kobo-deluxe/sfx/trance1.mid",
    "liquidwar-data/usr/share/games/liquidwar/music/colossus.mid",
)
SEED_BARS = 16
HELD_BACK = 3
STEPS = (10, 20, 40)
CONFIGS = (("full", 3e-4), ("full", 1e-3), ("full", 3e-3),
           ("lora", 2e-3), ("lora", 5e-3))  # fmt: skip
RANDOM_SEED = 1
SHORT_BARS, SHORT_HELD_BACK = 6, 2


def seeds(bars: int = SEED_BARS) -> list[tuple[str, list[int]]]:
    found = []
    for name in SEEDS:
        path = DEBS / name
        if not path.is_file():
            print(f"skipped (not unpacked): {path}", file=sys.stderr)
            continue
        found.append((path.stem, cut_seed(seed_from_text(midi_to_text(path)), bars)))
    return found


def measure(loaded, pieces, method: str, lr: float, steps: int, threads: int = 2,
            held_back: int = HELD_BACK) -> dict:  # fmt: skip
    """Mean seconds and held-back bits (before, after) of one configuration over the seeds."""
    rows = []
    for _name, ids in pieces:
        _, record = adapt_model(loaded, ids, steps, method=method, learning_rate=lr,
                                random_seed=RANDOM_SEED, held_back_bars=held_back,
                                threads=threads)  # fmt: skip
        rows.append(record)
    before = [r.held_back_bits_before for r in rows]
    after = [r.held_back_bits_after for r in rows]
    seconds = [r.seconds for r in rows]
    return {
        "method": method,
        "lr": lr,
        "steps": steps,
        "threads": threads,
        "seconds": statistics.mean(seconds),
        "max_seconds": max(seconds),
        "before": statistics.mean(before),
        "after": statistics.mean(after),
        "ratio": statistics.mean(a / b for a, b in zip(after, before, strict=True)),
        "better": sum(a < b for a, b in zip(after, before, strict=True)),
        "per_seed": [(n, b, a) for (n, _), b, a in zip(pieces, before, after, strict=True)],
    }


def generate_seconds(loaded, pieces, adapt: int) -> list[float]:
    """Seconds of a whole generate(): 8 new bars from each 16-bar seed."""
    seconds = []
    for _name, ids in pieces:
        started = time.perf_counter()
        generate(ids, constraints=Constraints(bars=8), loaded=[loaded], random_seed=RANDOM_SEED,
                 adapt=adapt)  # fmt: skip
        seconds.append(time.perf_counter() - started)
    return seconds


def short_seeds(loaded, default_steps: int) -> str:
    """The same on short seeds: SHORT_BARS bars, the last SHORT_HELD_BACK held back."""
    pieces = seeds(SHORT_BARS)
    method, lr = DEFAULT_METHOD, LEARNING_RATES[DEFAULT_METHOD]
    lines = [
        f"Short seeds: the first {SHORT_BARS} bars of the same files, adapted on "
        f"{SHORT_BARS - SHORT_HELD_BACK}, scored on the last {SHORT_HELD_BACK} ({method}, "
        f"lr {lr:g}):",
        "",
        "| steps | s (mean / max) | held-back bits/note | after / before | seeds better |",
        "|---|---|---|---|---|",
    ]
    for steps in sorted({10, default_steps}):
        r = measure(loaded, pieces, method, lr, steps, held_back=SHORT_HELD_BACK)
        lines.append(f"| {steps} | {r['seconds']:.1f} / {r['max_seconds']:.1f} | "
                     f"{r['before']:.2f} → {r['after']:.2f} | {r['ratio']:.2f} | "
                     f"{r['better']}/{len(pieces)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "cpu"


def section(results: list[dict], threads_one: dict, plain: list[float], adapted: list[float],
            pieces, default_steps: int) -> str:  # fmt: skip
    anchor = results[0]["before"]
    lines = [
        "## Adaptation to the seed",
        "",
        f"`bench/adapt.py`, {datetime.date.today()}, {cpu_name()}, 2 cores (shared with other "
        f"work: seconds are upper bounds). {len(pieces)} band seeds, the first {SEED_BARS} bars "
        f"of: {', '.join(n for n, _ in pieces)}. The shipped model is adapted on each seed's "
        f"first {SEED_BARS - HELD_BACK} bars and scored on its last {HELD_BACK} (held back); "
        f"the anchor is the same model without adaptation, in the same run: "
        f"**{anchor:.2f} bits per note**. Windows of 512 tokens, one per step, each "
        f"transposed by up to ±5 semitones; a 2-step warmup, then the rate held.",
        "",
        "| method | learning rate | steps | s (mean / max) | held-back bits/note | "
        "after / before (mean of ratios) | seeds better |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['lr']:g} | {r['steps']} | {r['seconds']:.1f} / "
            f"{r['max_seconds']:.1f} | {r['before']:.2f} → {r['after']:.2f} | "
            f"{r['ratio']:.2f} | {r['better']}/{len(pieces)} |"
        )
    best = next(r for r in results if (r["method"], r["lr"], r["steps"]) ==
                (DEFAULT_METHOD, LEARNING_RATES[DEFAULT_METHOD], default_steps))  # fmt: skip
    lines += [
        "",
        f"Training threads ({DEFAULT_METHOD}, {default_steps} steps): 1 thread "
        f"{threads_one['seconds']:.1f} s, 2 threads {best['seconds']:.1f} s (the same "
        "losses).",
        "",
        f"Per seed ({DEFAULT_METHOD}, lr {LEARNING_RATES[DEFAULT_METHOD]:g}, {default_steps} "
        "steps): held-back bits per note before → after:",
        "",
        "| seed | before | after |",
        "|---|---|---|",
        *(f"| {n} | {b:.2f} | {a:.2f} |" for n, b, a in best["per_seed"]),
        "",
        f"A whole `generate` of 8 new bars from the 16-bar seed: {statistics.mean(plain):.1f} s "
        f"without `--adapt`, {statistics.mean(adapted):.1f} s with `--adapt {default_steps}` "
        f"(means over the seeds; max {max(plain):.1f} s and {max(adapted):.1f} s).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write the section to RESULTS.md")
    parser.add_argument("--default-steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 seeds, the defaults only")
    parser.add_argument("--short-only", action="store_true", help="the short seeds alone")
    args = parser.parse_args()
    loaded = load_model("default")
    if args.short_only:
        print(short_seeds(loaded, args.default_steps))
        return
    pieces = seeds()
    configs = CONFIGS
    if args.quick:
        pieces = pieces[:3]
        configs = ((DEFAULT_METHOD, LEARNING_RATES[DEFAULT_METHOD]),)
    results = []
    for method, lr in configs:
        for steps in STEPS:
            results.append(measure(loaded, pieces, method, lr, steps))
            r = results[-1]
            print(f"{method} lr {lr:g} {steps} steps: {r['seconds']:.1f} s, "
                  f"{r['before']:.2f} -> {r['after']:.2f} bits/note", file=sys.stderr)  # fmt: skip
    method, lr = DEFAULT_METHOD, LEARNING_RATES[DEFAULT_METHOD]
    threads_one = measure(loaded, pieces, method, lr, args.default_steps, threads=1)
    plain = generate_seconds(loaded, pieces, 0)
    adapted = generate_seconds(loaded, pieces, args.default_steps)
    text = section(results, threads_one, plain, adapted, pieces, args.default_steps)
    text += "\n" + short_seeds(loaded, args.default_steps)
    print(text)
    if args.write:
        from train import write_section

        write_section(text)


if __name__ == "__main__":
    main()
