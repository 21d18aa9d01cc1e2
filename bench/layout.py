"""Benchmark the package's layout against the flat package it replaced: start-up, codec and
constrained decoding, side by side in the same run.

    .venv/bin/python bench/layout.py [--anchor REF] [--runs N]

The anchor is the tree at git REF (default 3e5abab, the last commit before [layout]),
checked out in a temporary worktree; both trees run in fresh processes with the same
interpreter and packages, PYTHONPATH pointing at each tree, alternating anchor and current
run by run; medians of N runs. Start-up is the wall time of a whole process; the codec is
in-process throughput over midi_in/ (best of 5 rounds in a process, median over processes);
decoding is `generate()` on the shipped model (bach_chorale.mid cut to 4 bars, 4 new bars,
2 variants, random seed 1234, one thread), whose takes must also be identical in both trees.
The "## Layout" section of RESULTS.md is
written from it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from train import device_name, write_section  # noqa: E402

CLI = "import sys; from music_lm.cli import main; sys.argv = ['music-lm', *sys.argv[1:]]; main()"

CODEC = r"""
import json, sys, time
from pathlib import Path
import music_lm
files = sorted(Path("midi_in").glob("*.mid"))
reps = int(sys.argv[1])
texts = [music_lm.midi_to_text(f) for f in files]  # warm-up
codec_s = validate_s = float("inf")
for _ in range(5):  # best of 5 rounds: the least disturbed by the machine
    start = time.perf_counter()
    for _ in range(reps):
        for f in files:
            music_lm.text_to_midi(music_lm.midi_to_text(f))
    codec_s = min(codec_s, time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(reps):
        for text in texts:
            music_lm.validate(text)
    validate_s = min(validate_s, time.perf_counter() - start)
tokens = sum(len(t.split()) for t in texts) * reps
print(json.dumps({"files_per_s": len(files) * reps / codec_s,
                  "validate_tokens_per_s": tokens / validate_s}))
"""

DECODE = r"""
import json, os, statistics, sys
os.environ["MUSIC_LM_DECODE_THREADS"] = "1"
import music_lm
try:  # this layout
    from music_lm import Constraints, generate
except ImportError:  # the flat package before it
    from music_lm.constraints import Constraints
    from music_lm.generate import generate
runs = int(sys.argv[1])
def once():
    return generate("midi_in/bach_chorale.mid", seed_bars=4, constraints=Constraints(bars=4),
                    variants=2, random_seed=1234)
once()  # warm-up: loads the model
made = [once() for _ in range(runs)]
print(json.dumps({"tokens_per_s": statistics.median(m.tokens_per_s for m in made),
                  "texts": [v.text for v in made[0].variants]}))
"""


def run(tree: Path, args: list[str], timed: bool = False) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(args[:2])}: {done.stderr.strip()[-500:]}")
    return wall, done.stdout


STARTUP = {
    "import music_lm": ["-c", "import music_lm"],
    "music-lm --help": ["-c", CLI, "--help"],
    "music-lm encode band_with_drums.mid": ["-c", CLI, "encode", "midi_in/band_with_drums.mid"],
}


def measure(trees: dict[str, Path], runs: int) -> dict:
    results: dict[str, dict] = {name: {} for name in trees}
    for label, args in STARTUP.items():
        walls: dict[str, list[float]] = {name: [] for name in trees}
        for _ in range(runs):
            for name, tree in trees.items():  # alternating, so drift hits both alike
                walls[name].append(run(tree, args)[0])
        for name in trees:
            results[name][label] = statistics.median(walls[name])
    codec: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(runs):
        for name, tree in trees.items():  # alternating, as above
            codec[name].append(json.loads(run(tree, ["-c", CODEC, "10"])[1]))
    for name in trees:
        for key in codec[name][0]:
            results[name][key] = statistics.median(r[key] for r in codec[name])
    for name, tree in trees.items():
        results[name].update(json.loads(run(tree, ["-c", DECODE, str(runs)])[1]))
    return results


def section(results: dict, anchor: str, runs: int) -> str:
    old, new = results["anchor"], results["current"]
    same = old.pop("texts") == new.pop("texts")
    lines = [
        "## Layout",
        "",
        f"`bench/layout.py`, {date.today()}, {device_name()}; the package in stage folders "
        f"(current) beside the flat package it replaced (anchor: {anchor}), same "
        f"interpreter and packages, fresh processes alternating, median of {runs}.",
        "",
        "| figure | anchor | current | current / anchor |",
        "|---|---|---|---|",
    ]
    for label in STARTUP:
        lines.append(
            f"| {label} (s, whole process) | {old[label]:.3f} | {new[label]:.3f} | "
            f"{new[label] / old[label]:.2f} |"
        )
    for key, label in (
        ("files_per_s", "codec: MIDI → text → MIDI, midi_in/ files/s"),
        ("validate_tokens_per_s", "grammar: validate, tokens/s"),
        ("tokens_per_s", "constrained decoding, shipped model, tokens/s"),
    ):
        lines.append(f"| {label} | {old[key]:,.0f} | {new[key]:,.0f} | {new[key] / old[key]:.2f} |")
    lines += [
        "",
        f"Takes for the same random seed identical in both trees: **{'yes' if same else 'NO'}**.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchor", default="3e5abab")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="Print; leave RESULTS.md.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "anchor"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(old), args.anchor],
            cwd=ROOT,
            check=True,
        )
        try:
            results = measure({"anchor": old, "current": ROOT}, args.runs)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=True)
    text = section(results, args.anchor, args.runs)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
