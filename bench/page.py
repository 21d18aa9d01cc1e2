"""Benchmark the page in a real browser: what users wait for, alone and several at once, beside
the command line doing the same work in the same run.

    .venv/bin/python bench/page.py                  # about 4 minutes on two cores
    .venv/bin/python bench/page.py --sessions 1 3   # fewer load rows

`streamlit run app.py` as `make run` starts it (its .streamlit/config.toml), the shipped
model, Debian's Chromium driven by Playwright (tests/browser.py). Three measurements:

* **one user, the page's defaults** (bach_chorale.mid, 4 seed bars, 4 new bars, 2 variants;
  a fixed random seed): from the click on Generate until every take's heading, roll, audio
  and downloads are drawn. Anchor: `music-lm generate` then `music-lm render` for the same
  takes, as two commands (process start and model load included). Best of 3 each.
* **several users at once** (1, 3 and 6 sessions, each in its own browser context, all
  pressing Generate together on a warm server): each one's time to its takes; the sampling
  speed of each generation (tokens/s, from the takes' records) against the same speed with
  one user; the server's CPU time per take against one user's (what waiting costs).
* **what waiting costs**: one long generation while 0, 3 and 5 other sessions wait behind it;
  its tokens/s against nobody waiting.
* **batching**: would generating the queued requests of identical settings as one batch pay?
  3 × `generate(variants=2)` one after the other against one `generate(variants=6)`.

Figures go to the "## Page" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser import (  # noqa: E402
    browser_sessions,
    page_problems,
    streamlit_server,
    takes_drawn,
    wait_for_script,
)
from train import device_name, write_section  # noqa: E402

SECTION = "## Page"
SEED = ROOT / "midi_in" / "bach_chorale.mid"
SEED_BARS, BARS, VARIANTS, RANDOM_SEED = 4, 4, 2, 1234
REPEATS = 3
TIMEOUT_S = 300.0
VENV_BIN = Path(sys.executable).parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_page(page, url: str, bars: int = BARS, variants: int = VARIANTS, seed: int = 0) -> None:
    """The page with the default example, ready to generate with these settings."""
    page.goto(url)
    wait_for_script(page, timeout_ms=120_000)
    page.get_by_text("Seed: piano roll and audio").wait_for(timeout=60_000)
    page.get_by_label("Bars to generate").fill(str(bars))
    page.get_by_label("Variants").fill(str(variants))
    page.get_by_text("Random seed").click()  # off: the seed number below is used
    page.get_by_label("Seed number").fill(str(RANDOM_SEED + seed))


def generate_together(pages, variants: int = VARIANTS) -> list[float]:
    """Click Generate on every page at once; seconds from the clicks to each one's takes."""
    started = time.perf_counter()
    for page in pages:
        page.get_by_role("button", name="Generate").click()
    waited: list[float | None] = [None] * len(pages)
    while None in waited:
        if time.perf_counter() - started > TIMEOUT_S:
            raise TimeoutError(f"takes not drawn within {TIMEOUT_S:g} s: {waited}")
        for index, page in enumerate(pages):
            if waited[index] is None and takes_drawn(page, variants):
                waited[index] = time.perf_counter() - started
                problems = page_problems(page)
                if problems:
                    raise RuntimeError(f"session {index + 1} shows {problems}")
        time.sleep(0.05)
    return waited  # type: ignore[return-value]


def take_speeds(page) -> list[float]:
    """tokens/s of the session's takes, as their captions give them."""
    text = page.locator("body").inner_text()
    return [float(s.replace(",", "")) for s in re.findall(r"· ([\d,]+) tokens/s", text)]


def cli_anchor(folder: Path) -> float:
    """`music-lm generate` then `music-lm render` on the same takes: seconds, both processes."""
    out = folder / f"cli-{time.perf_counter_ns()}"
    started = time.perf_counter()
    subprocess.run(
        [str(VENV_BIN / "music-lm"), "generate", str(SEED), "--seed-bars", str(SEED_BARS),
         "--bars", str(BARS), "-n", str(VARIANTS), "--random-seed", str(RANDOM_SEED),
         "-o", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run([str(VENV_BIN / "music-lm"), "render", str(out), "-o", str(out / "wav")],
                   check=True, capture_output=True)  # fmt: skip
    return time.perf_counter() - started


def one_user(url: str, folder: Path) -> dict:
    page_s, cli_s = [], []
    with browser_sessions(folder, 1, name="bench-one", viewport=(1600, 1000)) as pages:
        for _ in range(REPEATS):
            open_page(pages[0], url)
            page_s.append(generate_together(pages)[0])
            cli_s.append(cli_anchor(folder))
    return {"page_s": min(page_s), "cli_s": min(cli_s), "all_page_s": page_s, "all_cli_s": cli_s}


def several_users(url: str, pid: int, folder: Path, count: int) -> dict:
    with browser_sessions(folder, count, name=f"bench-{count}") as pages:
        for index, page in enumerate(pages):
            open_page(page, url, seed=index)
        cpu_before = cpu_seconds(pid)
        waited = generate_together(pages)
        cpu = cpu_seconds(pid) - cpu_before
        speeds = [s for page in pages for s in take_speeds(page)[:1]]
    first = min(range(count), key=lambda k: waited[k])  # it generated while all others waited
    return {
        "first_tokens_per_s": speeds[first],
        "sessions": count,
        "waited_s": waited,
        "tokens_per_s": statistics.median(speeds),
        "cpu_s_per_take": cpu / (count * VARIANTS),
        "cpu_cores": cpu / max(waited),
    }


def steady(url: str, folder: Path, waiting: int, bars: int = 32) -> float:
    """tokens/s of one long generation (`bars` bars, 1 variant) while `waiting` other sessions,
    which press Generate once it runs, wait in line behind it."""
    with browser_sessions(folder, 1 + waiting, name=f"bench-steady-{waiting}") as pages:
        first, others = pages[0], pages[1:]
        open_page(first, url, bars=bars, variants=1)
        for index, page in enumerate(others, start=1):
            open_page(page, url, bars=1, variants=1, seed=index)
        first.get_by_role("button", name="Generate").click()
        first.get_by_text(re.compile("generating: ")).wait_for(timeout=60_000)
        for page in others:
            page.get_by_role("button", name="Generate").click()
        deadline = time.perf_counter() + TIMEOUT_S
        while not takes_drawn(first, 1):
            if time.perf_counter() > deadline:
                raise TimeoutError("the long generation did not finish")
            time.sleep(0.1)
        speed = take_speeds(first)[0]
        for page in others:  # let the line drain before the next measurement
            while not takes_drawn(page, 1):
                if time.perf_counter() > deadline:
                    raise TimeoutError("a waiting session did not get its take")
                time.sleep(0.1)
    return speed


def batching() -> dict:
    from music_lm.generation.constraints import Constraints
    from music_lm.generation.runner import generate
    from music_lm.model.folder import load_model
    from music_lm.page.seeds import seed_from_midi

    loaded = load_model("default")
    seed = list(seed_from_midi(SEED.read_bytes(), SEED.name).cut(SEED_BARS).ids)

    def run(variants: int) -> float:
        started = time.perf_counter()
        generate(seed, constraints=Constraints(bars=BARS), loaded=[loaded], variants=variants,
                 random_seed=RANDOM_SEED)  # fmt: skip
        return time.perf_counter() - started

    run(1)  # warm
    apart = min(sum(run(VARIANTS) for _ in range(3)) for _ in range(REPEATS))
    together = min(run(3 * VARIANTS) for _ in range(REPEATS))
    return {"apart_s": apart, "batched_s": together}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 3, 6])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {"MUSIC_LM_RUNS": str(folder / "no-runs"), "MUSIC_LM_MODEL": "default"}
        started = time.perf_counter()
        with streamlit_server(ROOT / "app.py", env) as url:
            with browser_sessions(folder, 1, name="warm") as pages:  # the first load, timed
                pages[0].goto(url)
                wait_for_script(pages[0], timeout_ms=120_000)
                pages[0].get_by_text("Seed: piano roll and audio").wait_for(timeout=60_000)
            first_load = time.perf_counter() - started
            one = one_user(url, folder)
            print(f"one user: page {one['page_s']:.2f} s, CLI {one['cli_s']:.2f} s", flush=True)
            loads = []
            for count in args.sessions:
                row = several_users(url, url.pid, folder, count)
                loads.append(row)
                print(json.dumps(row), flush=True)
            waits = {k: steady(url, folder, k) for k in (0, 3, 5)}
            print(json.dumps(waits), flush=True)
    batch = batching()
    print(json.dumps(batch), flush=True)
    write_section(report(first_load, one, loads, waits, batch))


def report(
    first_load: float, one: dict, loads: list[dict], waits: dict[int, float], batch: dict
) -> str:
    alone = next((r for r in loads if r["sessions"] == 1), loads[0])
    lines = [
        SECTION,
        "",
        "`bench/page.py`: `streamlit run app.py` as `make run` starts it, the shipped model, "
        "Debian's Chromium driven by Playwright. Every figure beside its anchor from the same "
        "run.",
        "",
        f"**{device_name()}**, {time.strftime('%Y-%m-%d')}; server start to the first page drawn "
        f"(imports, seed summary, roll and audio): {first_load:.1f} s",
        "",
        f"One user, the page's defaults (bach_chorale.mid, {SEED_BARS} seed bars, {BARS} new "
        f"bars, {VARIANTS} variants, random seed {RANDOM_SEED}), best of {REPEATS}: from the "
        "click on Generate until every take's heading, roll, audio and downloads are drawn. "
        "Anchor: `music-lm generate` then `music-lm render` on the same takes (two processes, "
        "model load included). Goal: page ≤ 1.0× the CLI.",
        "",
        "| Generate → takes drawn (page) | generate + render (CLI) | page / CLI |",
        "|---:|---:|---:|",
        f"| {one['page_s']:.2f} s | {one['cli_s']:.2f} s | {one['page_s'] / one['cli_s']:.2f}× |",
        "",
        "Several users pressing Generate together (warm server; one generation at a time, the "
        "others in line). Sampling speed, from the takes' records: the first generation's, "
        "which ran while every other session waited (goal ≥ 0.8× one user's), and the median "
        "over all, which also shares the cores with the server and the browser drawing the "
        "finished sessions' takes (the browser runs on the same two cores here). CPU per "
        "take: the server's CPU seconds over the run divided by the takes made; equal to one "
        "user's when waiting costs nothing.",
        "",
        "| sessions | first takes | median | last takes | tokens/s, the first generation "
        "(all others waiting) | vs one user | tokens/s, median of all | vs one user "
        "| server CPU s per take | vs one user | server cores busy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in loads:
        waited = sorted(row["waited_s"])
        cpu_ratio = row["cpu_s_per_take"] / alone["cpu_s_per_take"]
        lines.append(
            f"| {row['sessions']} | {waited[0]:.1f} s | {statistics.median(waited):.1f} s "
            f"| {waited[-1]:.1f} s | {row['first_tokens_per_s']:.0f} "
            f"| {row['first_tokens_per_s'] / alone['first_tokens_per_s']:.2f}× "
            f"| {row['tokens_per_s']:.0f} "
            f"| {row['tokens_per_s'] / alone['tokens_per_s']:.2f}× "
            f"| {row['cpu_s_per_take']:.2f} | {cpu_ratio:.2f}× "
            f"| {row['cpu_cores']:.2f} |"
        )
    alone_speed = waits[0]
    lines += [
        "",
        "The first generation of a burst shares the two cores with the browser here: every "
        "tab that pressed Generate is redrawn by the same machine's Chromium at that moment "
        "(on a real page each user's browser runs on their own machine). The next table "
        "separates what waiting itself costs.",
    ]
    lines += [
        "",
        "What waiting costs the one who generates: one long generation (32 bars, 1 variant) "
        "while other sessions, which press Generate once it runs, wait in line behind it; its "
        "tokens/s against the same generation with nobody waiting. Goal ≥ 0.8×.",
        "",
        "| sessions waiting | tokens/s of the generating one | vs nobody waiting |",
        "|---:|---:|---:|",
    ]
    for count, speed in waits.items():
        lines.append(f"| {count} | {speed:.0f} | {speed / alone_speed:.2f}× |")
    gain = batch["apart_s"] / batch["batched_s"]
    lines += [
        "",
        f"Batching: 3 requests of {VARIANTS} variants with identical settings, one after the "
        f"other: {batch['apart_s']:.2f} s; as one batch of {3 * VARIANTS}: "
        f"{batch['batched_s']:.2f} s ({gain:.2f}× the throughput).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
