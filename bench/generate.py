"""Benchmark constrained generation with the shipped default model.

    .venv/bin/python bench/generate.py              # everything (about 5 minutes on 2 cores)
    .venv/bin/python bench/generate.py --samples 200 --render

Four measurements, each in the same run as its anchor:

* speed: ms per new token of our sampling loop (`music_lm.generation.runner.generate`: KV cache,
  masks, top-p) against transformers' `model.generate()` with the same masks as a
  `LogitsProcessor`, and against `model.generate()` with no masks at all (the price of
  the model alone); the same seed, bars and sampling settings;
* the masks' cost per token (grammar and constraint state, allowed ranges, the boolean
  mask): replayed over the tokens the speed runs sampled, under the default constraints
  and under a heavy set (key, range, polyphony, instruments), as a share of our loop's time
  per token;
* invalid outputs over --samples samples, with the masks (our loop, constraints cycling
  through four sets; each output's text validated by the grammar and its MIDI read back by
  the independent checker of tests/midi_checker.py) and without them (the model's own
  distribution through `model.generate()`, each output validated by the grammar);
* decode (`--decode` runs it alone): ms per new token at batch 1 and batch 4 of our loop
  against `model.generate()` (top-p, no masks, as many new tokens), both on one torch thread
  (our loop's default), runs interleaved; and the time of 1, 2 and 4 variants of one call
  against 1;
* wall time to continue 8 bars of 4/4 (bach_chorale.mid, 4 seed bars): from a loaded model,
  and from nothing (the model's load included, as a CLI call).

Raw figures go to bench/generate_results.json, keyed by device; the "## Generation"
section of RESULTS.md is rendered from them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from midi_checker import check_constraints  # noqa: E402
from train import device_name, write_section  # noqa: E402

from music_lm.generation.constraints import SEED_KEY, Constraints  # noqa: E402
from music_lm.generation.outputs import variant_files  # noqa: E402
from music_lm.generation.processor import grammar_logits_processor  # noqa: E402
from music_lm.generation.runner import generate  # noqa: E402
from music_lm.generation.sampling import V, allowed_mask  # noqa: E402
from music_lm.generation.seeds import _header_key, cut_seed, seed_from_file  # noqa: E402
from music_lm.generation.settings import Sampling  # noqa: E402
from music_lm.generation.state import ContinuationState  # noqa: E402
from music_lm.model.folder import load_model  # noqa: E402
from music_lm.tokens.grammar import GrammarError, GrammarState  # noqa: E402
from music_lm.tokens.rules import END  # noqa: E402
from music_lm.tokens.validate import validate  # noqa: E402
from music_lm.tokens.vocab import GRID_PER_QUARTER, VOCAB  # noqa: E402

RESULTS = BENCH / "generate_results.json"
SECTION = "## Generation"
SEEDS = sorted((ROOT / "midi_in").glob("*.mid"))
CHORALE = ROOT / "midi_in" / "bach_chorale.mid"
TOP_P = 0.95  # the CLI's default

NEW_BARS = 2  # per sample in the validity runs (1,000 of them on 2 cores in minutes)
CONSTRAINT_SETS = {
    "defaults": Constraints(bars=NEW_BARS),
    "key": Constraints(bars=NEW_BARS, scale=(SEED_KEY, "major")),
    "range + polyphony 2": Constraints(bars=NEW_BARS, pitch_range=(48, 84), max_polyphony=2),
    "pentatonic, polyphony 1, no drums": Constraints(
        bars=NEW_BARS,
        scale=(SEED_KEY, "pentatonic-minor"),
        max_polyphony=1,
        instruments=frozenset(range(128)),
    ),
}


def _median(values: list[float]) -> float:
    return statistics.median(values)


# ---- speed ----


def speed(loaded, runs: int) -> tuple[dict, list[tuple[list[int], int]]]:
    """ms/token of our loop and of model.generate() with and without the masks; also the
    sequences our loop sampled (for the mask replay)."""
    ids = cut_seed(seed_from_file(CHORALE)[0], 4)
    constraints = Constraints(bars=8)
    sampling = Sampling(top_p=TOP_P)
    model = loaded.model
    ours, sequences, new_counts = [], [], []
    generate(
        CHORALE,
        seed_bars=4,
        constraints=constraints,
        sampling=sampling,
        loaded=[loaded],
        random_seed=999,
        retries=0,
    )  # fmt: skip  (warm-up)
    for run in range(runs):
        started = time.perf_counter()
        g = generate(CHORALE, seed_bars=4, constraints=constraints, sampling=sampling,
                     loaded=[loaded], random_seed=run, retries=0)  # fmt: skip
        seconds = time.perf_counter() - started
        variant = g.variants[0]
        ours.append(seconds / variant.new_tokens * 1000)
        new_counts.append(variant.new_tokens)
        sequences.append((variant.ids, variant.seed_length))
    budget = 256 * constraints.bars
    hf_masked, hf_plain = [], []
    pad = VOCAB.ids["<pad>"]
    for run in range(runs):
        torch.manual_seed(run)
        processor = grammar_logits_processor(ids, constraints, budget)
        started = time.perf_counter()
        out = model.generate(
            input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            logits_processor=[processor], do_sample=True, top_p=TOP_P, top_k=0,
            max_new_tokens=budget, eos_token_id=END, pad_token_id=pad,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        new = out.shape[1] - len(ids)
        validate_ids(out[0].tolist())
        hf_masked.append(seconds / new * 1000)
        # the model alone: as many new tokens as our run made, no masks, no end
        count = new_counts[run]
        started = time.perf_counter()
        model.generate(
            input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            do_sample=True, top_p=TOP_P, top_k=0, max_new_tokens=count, min_new_tokens=count,
            pad_token_id=pad,
        )  # fmt: skip
        hf_plain.append((time.perf_counter() - started) / count * 1000)
    figures = {
        "seed": "bach_chorale.mid, 4 seed bars, 8 new bars, batch 1, top-p 0.95",
        "runs": runs,
        "new_tokens_median": _median(new_counts),
        "ours_ms_per_token": _median(ours),
        "hf_masked_ms_per_token": _median(hf_masked),
        "hf_plain_ms_per_token": _median(hf_plain),
    }
    return figures, sequences


def _hf_generate(model, ids: list[int], rows: int, new_tokens: int, seed: int) -> float:
    """Seconds of model.generate() for `rows` copies of `ids` and `new_tokens` new tokens each
    (top-p, no masks, no end)."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    model.generate(
        input_ids=torch.tensor([ids] * rows),
        attention_mask=torch.ones(rows, len(ids), dtype=torch.long),
        do_sample=True, top_p=TOP_P, top_k=0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
        pad_token_id=VOCAB.ids["<pad>"],
    )  # fmt: skip
    return time.perf_counter() - started


def decode_speed(loaded, runs: int) -> dict:
    """ms per new token of our loop (masks, top-p) and of model.generate() (top-p, no masks,
    as many new tokens as ours drew) at batch 1 and 4, on one thread each, runs interleaved;
    seconds of 1, 2 and 4 variants in one call."""
    ids = cut_seed(seed_from_file(CHORALE)[0], 4)
    constraints, sampling = Constraints(bars=8), Sampling(top_p=TOP_P)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # our loop's default (runner.decode_threads)

    def ours(variants: int, seed: int) -> tuple[float, list[int]]:
        started = time.perf_counter()
        g = generate(CHORALE, seed_bars=4, constraints=constraints, sampling=sampling,
                     variants=variants, loaded=[loaded], random_seed=seed, retries=0)  # fmt: skip
        return time.perf_counter() - started, [v.new_tokens for v in g.variants]

    ours(1, 999)  # warm-up
    figures: dict[str, list[float]] = {}
    for run in range(runs):
        for rows in (1, 4):
            seconds, counts = ours(rows, run)
            figures.setdefault(f"ours_{rows}", []).append(seconds / sum(counts) * 1000)
            figures.setdefault(f"ours_step_{rows}", []).append(seconds / max(counts) * 1000)
            hf = _hf_generate(loaded.model, ids, rows, max(counts), run)
            figures.setdefault(f"hf_{rows}", []).append(hf / (rows * max(counts)) * 1000)
            figures.setdefault(f"hf_step_{rows}", []).append(hf / max(counts) * 1000)
            figures.setdefault(f"variants_{rows}", []).append(seconds)
        seconds, _ = ours(2, run)
        figures.setdefault("variants_2", []).append(seconds)
    torch.set_num_threads(before)
    medians = {name: _median(values) for name, values in figures.items()}
    return {
        "seed": "bach_chorale.mid, 4 seed bars, 8 new bars, top-p 0.95, 1 torch thread",
        "runs": runs,
        **medians,
        "ratio_1": medians["ours_1"] / medians["hf_1"],
        "ratio_4": medians["ours_4"] / medians["hf_4"],
        "variants_2_over_1": medians["variants_2"] / medians["variants_1"],
        "variants_4_over_1": medians["variants_4"] / medians["variants_1"],
    }


def render_decode(d: dict) -> list[str]:
    return [
        f"Decode ({d['seed']}, median of {d['runs']} interleaved runs):",
        "",
        "| batch | ours ms/token | model.generate() ms/token | ours / model.generate() "
        "| ours ms/step | model.generate() ms/step |",
        "|---|---|---|---|---|---|",
        *(
            f"| {rows} | {d[f'ours_{rows}']:.2f} | {d[f'hf_{rows}']:.2f} "
            f"| **{d[f'ratio_{rows}']:.2f}×** | {d[f'ours_step_{rows}']:.2f} "
            f"| {d[f'hf_step_{rows}']:.2f} |"
            for rows in (1, 4)
        ),
        "",
        f"Variants in one call: 1 in {d['variants_1']:.2f} s, 2 in {d['variants_2']:.2f} s "
        f"({d['variants_2_over_1']:.2f}×), 4 in {d['variants_4']:.2f} s "
        f"(**{d['variants_4_over_1']:.2f}×**).",
        "",
    ]


def validate_ids(ids: list[int]) -> None:
    validate(" ".join(VOCAB.tokens[t] for t in ids))


# ---- the masks' cost ----


def mask_cost(
    sequences: list[tuple[list[int], int]], constraints: Constraints, repeats: int
) -> dict:
    """ms/token to advance the state, compute the allowed ranges and fill the mask, replayed
    over sampled sequences (best of `repeats`)."""
    mask = torch.zeros((1, V), dtype=torch.bool)
    best = None
    tokens = sum(len(ids) - start for ids, start in sequences)
    for _ in range(repeats):
        total = 0.0
        for ids, start in sequences:
            state = ContinuationState(ids[:start], constraints)
            budget = 256 * constraints.bars
            began = time.perf_counter()
            for i, token in enumerate(ids[start:]):
                allowed_mask([state.allowed_ranges(budget - i)], mask)
                state.advance(token)
            total += time.perf_counter() - began
        best = total if best is None else min(best, total)
    return {"tokens": tokens, "ms_per_token": best / tokens * 1000}


def heavy_sequences(loaded, constraints: Constraints, runs: int) -> list[tuple[list[int], int]]:
    out = []
    for run in range(runs):
        g = generate(CHORALE, seed_bars=4, constraints=constraints, sampling=Sampling(top_p=TOP_P),
                     loaded=[loaded], random_seed=run, retries=0)  # fmt: skip
        out += [(v.ids, v.seed_length) for v in g.variants]
    return out


# ---- invalid outputs ----


def with_masks(loaded, samples: int, batch: int) -> dict:
    """Samples from our loop, cycling through the seeds and the constraint sets; an output
    is invalid when the grammar rejects its text or the MIDI checker finds a constraint
    broken."""
    done = invalid = tokens = 0
    failures: list[str] = []
    started = time.perf_counter()
    combos = [(seed, name) for name in CONSTRAINT_SETS for seed in SEEDS]
    index = 0
    while done < samples:
        seed, name = combos[index % len(combos)]
        index += 1
        constraints = CONSTRAINT_SETS[name]
        rows = min(batch, samples - done)
        g = generate(seed, seed_bars=2, constraints=constraints, sampling=Sampling(top_p=TOP_P),
                     variants=rows, loaded=[loaded], random_seed=index, retries=0)  # fmt: skip
        for variant in g.variants:
            tokens += variant.new_tokens
            try:
                validate(variant.text)
                data = variant_files(g, variant, "x")[".mid"]
                check_constraints(
                    data,
                    constraints.with_seed_key(_header_key(variant.ids)),
                    variant.continuation_tick / GRID_PER_QUARTER,
                )
            except (GrammarError, AssertionError) as err:
                invalid += 1
                failures.append(f"{seed.name} {name}: {err}")
        done += rows
    return {
        "samples": done,
        "invalid": invalid,
        "new_tokens": tokens,
        "seconds": time.perf_counter() - started,
        "failures": failures[:5],
    }


def without_masks(loaded, samples: int, batch: int, max_new_tokens: int) -> dict:
    """Samples of the model's own distribution (model.generate(), top-p, no masks) from the
    same seeds: how many break the grammar within their first `max_new_tokens` tokens (or
    before their end), and how many end validly."""
    model = loaded.model
    pad = VOCAB.ids["<pad>"]
    broken = ended = tokens = 0
    positions: list[int] = []
    examples: list[str] = []
    started = time.perf_counter()
    done = 0
    index = 0
    while done < samples:
        seed = SEEDS[index % len(SEEDS)]
        index += 1
        ids = cut_seed(seed_from_file(seed)[0], 2)
        rows = min(batch, samples - done)
        torch.manual_seed(index)
        out = model.generate(
            input_ids=torch.tensor([ids] * rows),
            attention_mask=torch.ones(rows, len(ids), dtype=torch.long),
            do_sample=True, top_p=TOP_P, top_k=0, max_new_tokens=max_new_tokens,
            eos_token_id=END, pad_token_id=pad,
        )  # fmt: skip
        for row in out.tolist():
            new = row[len(ids) :]
            if END in new:
                new = new[: new.index(END) + 1]
            tokens += len(new)
            state = GrammarState()
            for token in ids:
                state.advance(token)
            position = 0
            try:
                for token in new:
                    state.advance(token)
                    if state.done:
                        ended += 1
                        break
                    position += 1
            except GrammarError as err:
                broken += 1
                positions.append(position)
                if len(examples) < 5:
                    examples.append(f"{seed.name}: {err}")
        done += rows
    return {
        "samples": done,
        "invalid": broken,
        "ended_validly": ended,
        "max_new_tokens": max_new_tokens,
        "new_tokens": tokens,
        "median_tokens_before_first_error": _median(positions) if positions else None,
        "examples": examples,
        "seconds": time.perf_counter() - started,
    }


# ---- wall time ----


def wall_time(runs: int) -> dict:
    """8 bars of 4/4 from bach_chorale.mid (4 seed bars): from a loaded model, and with the
    model's load (the weights read from disk each time, as a CLI call)."""
    warm, cold = [], []
    loaded = load_model("default", device="cpu")
    for run in range(runs):
        started = time.perf_counter()
        generate(CHORALE, seed_bars=4, constraints=Constraints(bars=8),
                 sampling=Sampling(top_p=TOP_P), loaded=[loaded], random_seed=run)  # fmt: skip
        warm.append(time.perf_counter() - started)
        started = time.perf_counter()
        generate(CHORALE, seed_bars=4, constraints=Constraints(bars=8),
                 sampling=Sampling(top_p=TOP_P), random_seed=run, device="cpu")  # fmt: skip
        cold.append(time.perf_counter() - started)
    return {"runs": runs, "warm_s": _median(warm), "cold_s": _median(cold), "max_warm_s": max(warm)}


# ---- the report ----


def render(results: dict) -> str:
    lines = [
        SECTION,
        "",
        "`bench/generate.py`: constrained generation with the shipped default model (8.2 M",
        "parameters, fp16 weights run in fp32 on CPU). Medians over the runs; each figure",
        "beside its anchor from the same run.",
        "",
    ]
    for device, e in results.items():
        s, m, w = e["speed"], e["mask"], e["wall"]
        ours = s["ours_ms_per_token"]
        lines += [
            f"**{device}** ({e['date']}, torch {e['torch']}, transformers {e['transformers']})",
            "",
            f"Speed: {s['seed']}; {s['runs']} runs, {s['new_tokens_median']:.0f} new tokens "
            "(median).",
            "",
            "| loop | ms / new token | vs ours |",
            "|---|---:|---:|",
            f"| ours (`generate()`: KV cache, masks, post-check) | {ours:.2f} | 1.00× |",
            f"| `model.generate()` + the masks as a LogitsProcessor "
            f"| {s['hf_masked_ms_per_token']:.2f} | {s['hf_masked_ms_per_token'] / ours:.2f}× |",
            f"| `model.generate()`, no masks (the model alone) "
            f"| {s['hf_plain_ms_per_token']:.2f} | {s['hf_plain_ms_per_token'] / ours:.2f}× |",
            "",
            "The masks' cost per token (state update, allowed ranges, boolean mask), replayed "
            "over sampled tokens, best of 3; goal ≤ 0.1 ms on CPU at batch 1:",
            "",
            "| constraints | tokens | ms / token | share of our loop's time per token |",
            "|---|---:|---:|---:|",
        ]
        decode = ["", *render_decode(e["decode"])] if "decode" in e else []
        for name, figures in m.items():
            lines.append(
                f"| {name} | {figures['tokens']:,} | {figures['ms_per_token']:.3f} "
                f"| {figures['ms_per_token'] / ours:.1%} |"
            )
        lines += decode
        wm, wo = e["with_masks"], e["without_masks"]
        lines += [
            "",
            "Invalid outputs (seeds: the 4 files of midi_in/, 2 seed bars; top-p 0.95):",
            "",
            "| sampler | samples | invalid | new tokens | seconds |",
            "|---|---:|---:|---:|---:|",
            f"| ours with the masks, {e['new_bars']} new bars, constraints cycling through: "
            f"{'; '.join(e['constraint_sets'])} | {wm['samples']:,} | **{wm['invalid']}** "
            f"| {wm['new_tokens']:,} | {wm['seconds']:.0f} |",
            f"| `model.generate()` without masks, up to {wo['max_new_tokens']} new tokens "
            f"| {wo['samples']:,} | **{wo['invalid']}** ({wo['invalid'] / wo['samples']:.1%}) "
            f"| {wo['new_tokens']:,} | {wo['seconds']:.0f} |",
            "",
            f"Without masks, {wo['ended_validly']} of {wo['samples']} reached a valid `end`; "
            "the median invalid one broke the grammar after "
            f"{wo['median_tokens_before_first_error']:.0f} new tokens (e.g. "
            f"{wo['examples'][0] if wo['examples'] else 'none'}). With the masks, every "
            "output is valid token text, has exactly the asked bars and keeps its constraints "
            "as read back from the MIDI file by tests/midi_checker.py.",
            "",
            f"Wall time to continue 8 bars of 4/4 (bach_chorale.mid, 4 seed bars; goal < 3 s), "
            f"median of {w['runs']}: **{w['warm_s']:.2f} s** with the model loaded "
            f"(slowest {w['max_warm_s']:.2f} s), **{w['cold_s']:.2f} s** with the model's load.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--unmasked-tokens", type=int, default=512)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--render", action="store_true", help="only rewrite the section")
    parser.add_argument("--decode", action="store_true", help="only the decode figures, printed")
    args = parser.parse_args()
    if args.decode:
        figures = decode_speed(load_model("default", device="cpu"), args.runs)
        print("\n".join(render_decode(figures)))
        if args.results != RESULTS:
            args.results.write_text(json.dumps(figures, indent=2) + "\n")
        return
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    if not args.render:
        import transformers

        device = "cuda" if torch.cuda.is_available() else "cpu"
        loaded = load_model("default", device=device)
        entry = {
            "date": time.strftime("%Y-%m-%d"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "constraint_sets": list(CONSTRAINT_SETS),
            "new_bars": NEW_BARS,
        }
        entry["speed"], sequences = speed(loaded, args.runs)
        print("speed", entry["speed"], flush=True)
        entry["decode"] = decode_speed(loaded, args.runs)
        print("decode", entry["decode"], flush=True)
        heavy = Constraints(
            bars=8, scale=(SEED_KEY, "major"), pitch_range=(48, 84), max_polyphony=3,
            instruments=frozenset(range(128)),
        )  # fmt: skip
        entry["mask"] = {
            "defaults (8 bars)": mask_cost(sequences, Constraints(bars=8), 3),
            "key, range C3-C6, polyphony 3, no drums (8 bars)": mask_cost(
                heavy_sequences(loaded, heavy, args.runs), heavy, 3
            ),
        }
        print("mask", entry["mask"], flush=True)
        entry["wall"] = wall_time(args.runs)
        print("wall", entry["wall"], flush=True)
        entry["with_masks"] = with_masks(loaded, args.samples, args.batch)
        print("with masks", entry["with_masks"], flush=True)
        entry["without_masks"] = without_masks(
            loaded, args.samples, args.batch, args.unmasked_tokens
        )
        print("without masks", entry["without_masks"], flush=True)
        results[device_name()] = entry
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    if args.results == RESULTS:
        write_section(render(results))
    else:
        print(render(results))


if __name__ == "__main__":
    main()
