"""Benchmark decoding speed against OpenMP's wait policy and torch's thread count, on a quiet
machine and beside a busy neighbour, as the page and the CLI run it.

    .venv/bin/python bench/threads.py

Each configuration runs in a fresh process (OMP_WAIT_POLICY is read when torch loads
libgomp): the shipped model, bach_chorale.mid cut to 4 bars, 4 new bars, 2 variants, a fixed
random seed; `generate()` on the main thread (as `music-lm generate`) and on a worker thread
(as the page's job); tokens/s, median of 3 after a warm-up. "Busy neighbour": another process
spinning on one core meanwhile (a browser on the same machine, a second job, a CI neighbour).
The "## Decoding threads" section of RESULTS.md is written from it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from train import device_name, write_section  # noqa: E402

RUNS = 3
CONFIGS = [("ACTIVE", 2), ("PASSIVE", 2), ("PASSIVE", 1)]

CHILD = r"""
import json, os, statistics, sys, threading
os.environ["MUSIC_LM_DECODE_THREADS"] = sys.argv[1]  # generate() sets torch's threads from it
import music_lm  # before torch: its OMP_WAIT_POLICY default applies
import torch
from music_lm.generation.constraints import Constraints
from music_lm.generation.runner import generate
from music_lm.model.folder import load_model
from music_lm.page.seeds import seed_from_midi

runs = int(sys.argv[2])
seed = list(seed_from_midi(open(sys.argv[3], "rb").read(), "seed.mid").cut(4).ids)
loaded = load_model("default")

def speed(out):
    made = generate(seed, constraints=Constraints(bars=4), loaded=[loaded], variants=2,
                    random_seed=1234)
    out.append(made.tokens_per_s)

speed([])  # warm-up
main, worker = [], []
for _ in range(runs):
    speed(main)
    thread = threading.Thread(target=speed, args=(worker,))
    thread.start()
    thread.join()
print(json.dumps({"main": statistics.median(main), "worker": statistics.median(worker)}))
"""


def measure(policy: str, threads: int) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    seed = ROOT / "midi_in" / "bach_chorale.mid"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(threads), str(RUNS), str(seed)],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    rows = []
    for busy in (False, True):
        neighbour = None
        if busy:
            neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for policy, threads in CONFIGS:
                figures = measure(policy, threads)
                rows.append((busy, policy, threads, figures))
                print(busy, policy, threads, figures, flush=True)
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
    anchor = {busy: f for busy, p, t, f in rows if (p, t) == ("ACTIVE", 2)}
    lines = [
        "## Decoding threads",
        "",
        "`bench/threads.py`: decoding speed against OpenMP's wait policy and torch's threads. "
        "Shipped model, bach_chorale.mid (4 seed bars), 4 new bars, 2 variants; tokens/s, "
        f"median of {RUNS} after a warm-up, each configuration in a fresh process. Main "
        "thread: as `music-lm generate`; worker thread: as the page's job. Busy neighbour: "
        "another process spinning on one core. Anchor: OpenMP's default (ACTIVE), 2 threads, "
        "in the same run.",
        "",
        f"**{device_name()}**, {time.strftime('%Y-%m-%d')}",
        "",
        "| machine | OMP_WAIT_POLICY | threads | main thread tok/s | vs anchor "
        "| worker thread tok/s | vs anchor |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for busy, policy, threads, f in rows:
        a = anchor[busy]
        lines.append(
            f"| {'busy neighbour' if busy else 'quiet'} | {policy} | {threads} "
            f"| {f['main']:.0f} | {f['main'] / a['main']:.2f}× "
            f"| {f['worker']:.0f} | {f['worker'] / a['worker']:.2f}× |"
        )
    lines += [
        "",
        "So `generate()` decodes with 1 torch thread ($MUSIC_LM_DECODE_THREADS to change it), "
        "and `import music_lm` sets OMP_WAIT_POLICY=PASSIVE unless the user set it (for the "
        "other torch work, training included): with OpenMP's default, idle threads spin, and "
        "beside any other busy process they take turns with the thread that has work.",
        "",
    ]
    write_section("\n".join(lines))


if __name__ == "__main__":
    main()
