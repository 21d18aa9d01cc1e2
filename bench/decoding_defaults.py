"""What the decoding defaults of [sanity] cost per token: the continuation state's masks
(allowed ranges + advance) replayed over the same token sequences, in this tree with the
defaults on, with every one of them off, and in the anchor tree (before [sanity]).

    .venv/bin/python bench/decoding_defaults.py [--anchor 2e72e9b] [--rows 12]

The sequences are drawn here with the shipped model under the defaults, so they are valid
under the looser anchor and the switched-off state too. Each tree is timed in its own
process (the anchor from a `git worktree`), best of 3 over all rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TIMER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from music_lm.generation.constraints import Constraints
from music_lm.generation.state import ContinuationState
rows = json.load(open(sys.argv[2]))
fields = json.loads(sys.argv[3])
best = None
for _ in range(3):
    steps = 0
    started = time.perf_counter()
    for seed, new, bars in rows:
        state = ContinuationState(seed, Constraints(bars=bars, **fields))
        budget = 256 * bars
        for i, token in enumerate(new):
            state.allowed_ranges(budget - i)
            state.advance(token)
            steps += 1
    seconds = time.perf_counter() - started
    best = seconds if best is None else min(best, seconds)
print(json.dumps({"steps": steps, "ms_per_token": 1000 * best / steps}))
"""

OFF = {"unisons": True, "drum_keys": "any", "drum_steps": None, "hold_past_end": True,
       "loop_guard": None}  # fmt: skip


def draw_rows(count: int) -> list[tuple[list[int], list[int], int]]:
    sys.path.insert(0, str(ROOT))
    from music_lm.generation.constraints import Constraints
    from music_lm.generation.runner import generate

    rows = []
    seeds = [ROOT / "midi_in" / name for name in ("band_with_drums.mid", "bach_chorale.mid")]
    for index in range(count):
        seed = seeds[index % len(seeds)]
        generation = generate(seed, seed_bars=4, constraints=Constraints(bars=8),
                              random_seed=index, retries=0)  # fmt: skip
        variant = generation.variants[0]
        rows.append((variant.ids[: variant.seed_length], variant.ids[variant.seed_length :], 8))
    return rows


def time_tree(tree: Path, rows_file: Path, fields: dict) -> dict:
    command = [sys.executable, "-c", TIMER, str(tree), str(rows_file), json.dumps(fields)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchor", default="2e72e9b")
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    rows = draw_rows(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = Path(tmp) / "rows.json"
        rows_file.write_text(json.dumps(rows))
        anchor = Path(tmp) / "anchor"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(anchor),
                        args.anchor], check=True)  # fmt: skip
        try:
            figures = {
                "anchor": time_tree(anchor, rows_file, {}),
                "defaults": time_tree(ROOT, rows_file, {}),
                "defaults without the loop guard": time_tree(ROOT, rows_file, {"loop_guard": None}),
                "all off": time_tree(ROOT, rows_file, OFF),
            }
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(anchor)],
                           check=True)  # fmt: skip
    base = figures["anchor"]["ms_per_token"]
    print(f"{sum(len(r[1]) for r in rows)} tokens in {len(rows)} continuations of 8 bars")
    print("| masks | ms / token | vs anchor |\n|---|---:|---:|")
    for name, figure in figures.items():
        ms = figure["ms_per_token"]
        print(f"| {name} | {ms:.4f} | {ms / base:.2f}x |")


if __name__ == "__main__":
    main()
