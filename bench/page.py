"""Benchmark the page: what a user waits for, against the same work done by the API directly.

    .venv/bin/python bench/page.py

Driven through Streamlit's AppTest (the script runs as under `streamlit run`, without the
browser's drawing). The shipped model; seed bach_chorale.mid, 4 bars; 8 new bars; fixed
random seed; best of 3. Anchor in the same run: `generate()` with the model loaded plus one
FluidSynth render per take — the work the page must do in any case. Figures go to the
"## Page" section of RESULTS.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUSIC_LM_RUNS", str(BENCH / ".cache" / "no-runs"))

from streamlit.testing.v1 import AppTest  # noqa: E402
from train import device_name, write_section  # noqa: E402

from music_lm.constraints import Constraints  # noqa: E402
from music_lm.generate import generate, variant_files  # noqa: E402
from music_lm.model import load_model  # noqa: E402
from music_lm.session import render_wav, seed_from_midi  # noqa: E402

SECTION = "## Page"
SEED = ROOT / "midi_in" / "bach_chorale.mid"
BARS, RANDOM_SEED = 8, 1234


def widget(elements, label: str):
    return next(w for w in elements if w.label == label)


def page_generation(variants: int) -> tuple[float, float, AppTest]:
    """(seconds from Generate to the results drawn, seconds of one later rerun, the app)."""
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    app.run()
    widget(app.number_input, "Bars to generate").set_value(BARS)
    widget(app.number_input, "Variants").set_value(variants)
    widget(app.checkbox, "Random seed").uncheck()
    widget(app.number_input, "Seed number").set_value(RANDOM_SEED)
    started = time.perf_counter()
    widget(app.button, "Generate").click().run()
    app.session_state["job"].wait(300)
    app.run()  # the page's poll: collect the takes, draw them
    waited = time.perf_counter() - started
    assert len(app.session_state["history"].shown_takes) == variants
    started = time.perf_counter()
    app.run()  # any widget change re-runs the script with the takes on the page
    return waited, time.perf_counter() - started, app


def api_generation(variants: int, loaded) -> float:
    seed = seed_from_midi(SEED.read_bytes(), SEED.name).cut(4)
    started = time.perf_counter()
    made = generate(list(seed.ids), constraints=Constraints(bars=BARS), models=["default"],
                    loaded=[loaded], variants=variants, random_seed=RANDOM_SEED)  # fmt: skip
    for variant in made.variants:
        render_wav(variant_files(made, variant, "x")[".mid"], "x.mid")
    return time.perf_counter() - started


def main() -> None:
    started = time.perf_counter()
    first = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    first.run()
    first_load = time.perf_counter() - started
    loaded = load_model("default")
    rows = []
    for variants in (1, 2, 4):
        page = min(page_generation(variants)[:2] for _ in range(3))
        api = min(api_generation(variants, loaded) for _ in range(3))
        rows.append((variants, page[0], page[1], api))
        print(f"{variants} variants: page {page[0]:.2f} s (rerun {page[1]:.2f} s), "
              f"API {api:.2f} s", flush=True)  # fmt: skip
    lines = [
        SECTION,
        "",
        "`bench/page.py`: the page through Streamlit's AppTest (the script as `streamlit run` "
        "runs it, without the browser's drawing); shipped model, seed bach_chorale.mid cut to "
        f'4 bars, {BARS} new bars, random seed {RANDOM_SEED}; best of 3. "Generate → results" '
        "is from the click to the takes drawn (generation on the worker thread, WAV renders, "
        "the page's rerun with rolls, players and downloads). Anchor in the same run: "
        "`generate()` with the model loaded plus one FluidSynth render per take.",
        "",
        f"**{device_name()}**, {time.strftime('%Y-%m-%d')}; first page load (imports, seed "
        f"summary, roll and audio): {first_load:.2f} s",
        "",
        "| variants | Generate → results | API anchor | page / anchor | a rerun, takes shown |",
        "|---:|---:|---:|---:|---:|",
    ]
    for variants, page_s, rerun_s, api_s in rows:
        lines.append(f"| {variants} | {page_s:.2f} s | {api_s:.2f} s | {page_s / api_s:.2f}× "
                     f"| {rerun_s:.2f} s |")  # fmt: skip
    lines.append("")
    write_section("\n".join(lines))


if __name__ == "__main__":
    main()
