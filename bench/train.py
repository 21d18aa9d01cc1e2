"""Benchmark training throughput: our loop (music_lm.training.loop) against Hugging Face Trainer.

    .venv/bin/python bench/train.py                       # CPU: the small preset
    python bench/train.py --presets small base --steps 30 # on a GPU: compiled bf16
    .venv/bin/python bench/train.py --render              # rewrite the section from the JSON
    .venv/bin/python bench/train.py --processes 2         # 1 process against 2 (torchrun)

For each preset, the same GPT-2 (context 1,024) trains on windows of the same size:

* ours: `music_lm.training.loop.train` itself (the code users run: window sampling from a corpus,
  transposition, the optimizer step, logging), `--steps` steps after `--warmup` steps that
  are not timed (torch.compile's first steps), tokens/s from its metrics.jsonl;
* anchor: transformers' `Trainer` on the same model config, batch size and precision,
  with `torch_compile` when ours compiles, on pre-made windows of the same length,
  timed by a callback from the end of the warmup steps.

On a GPU both run in bf16 with torch.compile and the figures include the model FLOPs
utilisation (6 N + 12 L d T FLOPs per token against the GPU's dense bf16 peak). On a CPU
both run in fp32, eager (compiling pays back only after far more steps than a bench runs).

The corpus: --data (a built corpus folder), or else a synthetic corpus of random valid-
shaped pieces written under bench/.cache (throughput does not depend on the notes).
Raw figures go to bench/train_results.json, keyed by device; the "## Training" section of
RESULTS.md is rendered from all of them.

`--finetune` measures fine-tuning against pretraining on the shipped model's size: tokens/s of
our loop fine-tuning `default` with `music-lm finetune`'s dropout (0.1, on the residual stream
and the embeddings) against training a fresh model of the same shape with no dropout, and,
as the figure before the fix, fine-tuning with dropout 0.1 on the attention weights too
(which takes CPU attention off its fused kernel). Same batch, corpus and precision (auto).

`--processes N` measures something else: tokens/s of `music-lm train` as one process with N
threads against N processes of one thread each (`torchrun --standalone --nproc_per_node N`,
gloo on a CPU), on the same global batch (`--batch` windows per step, `--batch / N` per
process), and prints them with their ratio (to --results when given, not to RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from music_lm.model.folder import PRESETS, model_config, new_model  # noqa: E402
from music_lm.tokens.vocab import VOCAB  # noqa: E402
from music_lm.training.config import TrainConfig  # noqa: E402
from music_lm.training.loop import train  # noqa: E402
from music_lm.training.metrics import PEAK_BF16_FLOPS, flops_per_token  # noqa: E402

RESULTS = BENCH / "train_results.json"
SECTION = "## Training"
CONTEXT = 1024
SYNTHETIC = BENCH / ".cache" / f"train-synthetic-{VOCAB.sha256[:12]}"  # the default corpus


def synthetic_corpus(folder: Path, tokens: int = 600_000) -> Path:
    """A corpus folder of random pieces (a header, then bar/pos/track/dur/vel/pitch tokens):
    only its shape matters for speed."""
    from music_lm.corpus.dataset import CORPUS_FORMAT, Piece

    if (folder / "manifest.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    words = VOCAB.ids
    pitch, dur, pos = VOCAB.ranges["pitch"], VOCAB.ranges["dur"], VOCAB.ranges["pos"]
    rows, shards = [], {}
    for split, share in (("train", 0.9), ("valid", 0.1)):
        parts, offset = [], 0
        while offset < tokens * share:
            body = []
            for _ in range(40):
                body += [
                    words["bar"],
                    int(rng.choice(pos[:96])),
                    words["t1"],
                    int(rng.choice(dur[:48])),
                    words["v:64"],
                    int(rng.choice(pitch)),
                ]
            ids = [
                words["piece"],
                words["style:none"],
                words["inst:acoustic-grand-piano"],
                *body,
                words["end"],
            ]
            name = f"{split}{len(rows)}"
            rows.append(Piece(name, "synthetic", "none", split, len(ids), 40, (0, 0), name,
                              f"{split}-000.bin", offset))  # fmt: skip
            parts.append(np.array(ids, dtype=np.uint16))
            offset += len(ids)
        shards[split] = np.concatenate(parts)
        shards[split].tofile(folder / f"{split}-000.bin")
    (folder / "index.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in rows))
    splits = {
        s: {
            "pieces": sum(r.split == s for r in rows),
            "notes": 0,
            "tokens": len(shards.get(s, [])),
        }
        for s in ("train", "valid", "test")
    }
    manifest = {
        "format": CORPUS_FORMAT,
        "version": 1,
        "vocab_size": len(VOCAB),
        "vocab_sha256": VOCAB.sha256,
        "splits": splits,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads"


def peak() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def ours(preset: str, data: Path, batch: int, steps: int, warmup: int, compiled: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            data=(str(data),),
            output=f"{tmp}/run",
            preset=preset,
            context=CONTEXT,
            batch_size=batch,
            max_steps=warmup + steps,
            eval_every=10**9,
            save_every=10**9,
            log_every=math.gcd(warmup, steps),  # rows at the warmup end and the timed end
            progress=False,
            compile="on" if compiled else "off",
            precision="bf16"
            if torch.cuda.is_available()
            else "fp32",  # like for like with the Trainer anchor
            warmup_steps=10,
        )
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        train(config, log=lambda _m: None)
        rows = [json.loads(x) for x in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
    return {"tokens_per_s": timed_tokens_per_s(rows, warmup, steps, batch * CONTEXT), **memory()}


def timed_tokens_per_s(rows: list[dict], warmup: int, steps: int, tokens_per_step: int) -> float:
    """Tokens/s of the steps after `warmup`, from a run's metrics rows: each row's tokens/s
    covers the steps since the row before (measured before any evaluation it triggers)."""
    seconds, previous = 0.0, warmup
    for row in (r for r in rows if r["step"] > warmup):
        seconds += (row["step"] - previous) * tokens_per_step / row["tokens_per_s"]
        previous = row["step"]
    return steps * tokens_per_step / seconds


def processes(preset: str, data: Path, batch: int, steps: int, warmup: int, count: int) -> dict:
    """tokens/s of one process of `count` threads and of `count` processes of one thread
    (torchrun), each step `batch` windows in all; fp32, eager, as the CPU figures above."""
    if batch % count:
        raise SystemExit(f"--batch {batch} does not split over {count} processes")
    precision = "bf16" if torch.cuda.is_available() else "fp32"
    torchrun = Path(sys.executable).parent / "torchrun"
    launches = {
        "1 process": ([sys.executable, "-m", "music_lm.cli"], batch, count),
        f"{count} processes": ([str(torchrun), "--standalone", "--nproc_per_node", str(count),
                                "-m", "music_lm.cli"], batch // count, 1),
    }  # fmt: skip
    figures = {}
    for name, (launcher, per_process, threads) in launches.items():
        with tempfile.TemporaryDirectory() as tmp:
            command = [*launcher, "train", "--data", str(data), "--output", f"{tmp}/run",
                       "--preset", preset, "--context", str(CONTEXT),
                       "--batch-size", str(per_process), "--max-steps", str(warmup + steps),
                       "--eval-every", str(10**9), "--save-every", str(10**9),
                       "--log-every", str(math.gcd(warmup, steps)), "--precision", precision,
                       "--compile", "off", "--warmup-steps", "10", "--no-progress"]  # fmt: skip
            env = os.environ | {"OMP_NUM_THREADS": str(threads)}
            subprocess.run(command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            lines = Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        speed = timed_tokens_per_s(rows, warmup, steps, batch * CONTEXT)
        figures[name] = {"processes": count if name != "1 process" else 1,
                         "threads_each": threads, "tokens_per_s": speed}  # fmt: skip
        print(f"{preset}, {name} ({threads} thread(s) each): {speed:,.0f} tokens/s", flush=True)
    one, several = figures["1 process"], figures[f"{count} processes"]
    ratio = several["tokens_per_s"] / one["tokens_per_s"]
    print(f"{count} processes / 1 process: {ratio:.2f}×", flush=True)
    return {"device": device_name(), "date": time.strftime("%Y-%m-%d"), "preset": preset,
            "batch": batch, "steps": steps, "precision": precision, "runs": figures,
            "ratio": ratio}  # fmt: skip


def finetune_against_pretrain(
    data: Path, batch: int, steps: int, warmup: int, repeats: int = 1
) -> dict:
    """tokens/s of our loop pretraining a model of the default model's shape, fine-tuning
    `default` (dropout 0.1, none on attention) and fine-tuning it with attention dropout 0.1;
    `repeats` rounds of the three, alternated, and each one's median ratio to pretraining."""
    import music_lm.training.build as build
    from music_lm.model.folder import load_model

    default = load_model("default").model
    shape = default.config
    sizes = {"n_layer": shape.n_layer, "n_head": shape.n_head, "n_embd": shape.n_embd}
    runs = {
        "pretrain (dropout 0)": ({**sizes, "dropout": 0.0}, 0.0),
        "fine-tune (dropout 0.1, attention 0)": ({"base": "default", "dropout": 0.1}, 0.0),
        "fine-tune (dropout 0.1, attention 0.1: before)": (
            {"base": "default", "dropout": 0.1}, 0.1),
    }  # fmt: skip
    figures: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (settings, attention) in runs.items():
            build.ATTENTION_DROPOUT = attention  # the figure before the fix, for comparison
            with tempfile.TemporaryDirectory() as tmp:
                config = TrainConfig(data=(str(data),), output=f"{tmp}/run", context=CONTEXT,
                                     batch_size=batch, max_steps=warmup + steps,
                                     eval_every=10**9, save_every=10**9,
                                     log_every=math.gcd(warmup, steps), progress=False,
                                     compile="off", warmup_steps=10, **settings)  # fmt: skip
                train(config, log=lambda _m: None)
                lines = Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()
            rows = [json.loads(x) for x in lines]
            figures[name].append(timed_tokens_per_s(rows, warmup, steps, batch * CONTEXT))
            print(f"{name}: {figures[name][-1]:,.0f} tokens/s", flush=True)
    build.ATTENTION_DROPOUT = 0.0
    pretrain = figures["pretrain (dropout 0)"]
    ratios = {name: [a / b for a, b in zip(speeds, pretrain, strict=True)]
              for name, speeds in figures.items()}  # fmt: skip
    for name, values in ratios.items():
        print(f"{name} / pretrain: {', '.join(f'{r:.2f}' for r in values)}; "
              f"median {_median(values):.2f}x", flush=True)  # fmt: skip
    return {"device": device_name(), "date": time.strftime("%Y-%m-%d"), "batch": batch,
            "steps": steps, "parameters": sum(p.numel() for p in default.parameters()),
            "tokens_per_s": figures, "ratios": ratios}  # fmt: skip


def anchor(preset: str, batch: int, steps: int, warmup: int, compiled: bool) -> dict:
    """transformers.Trainer on the same model and window shape."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Windows(torch.utils.data.Dataset):
        def __init__(self, count: int) -> None:
            rng = np.random.default_rng(0)
            self.ids = torch.from_numpy(rng.integers(2, len(VOCAB), (count, CONTEXT)))

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    gpu = torch.cuda.is_available()
    model = new_model(model_config(preset, CONTEXT))
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            max_steps=warmup + steps,
            learning_rate=1e-3,
            lr_scheduler_type="cosine",
            warmup_steps=10,
            bf16=gpu,
            torch_compile=compiled,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            dataloader_num_workers=0,
            optim="adamw_torch_fused",
            disable_tqdm=True,
        )
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        Trainer(
            model=model,
            args=args,
            train_dataset=Windows(batch * (warmup + steps)),
            callbacks=[clock],
        ).train()
    seconds = clock.times[-1] - clock.times[warmup - 1]
    return {"tokens_per_s": steps * batch * CONTEXT / seconds, **memory()}


def memory() -> dict:
    if torch.cuda.is_available():
        return {"peak_gib": torch.cuda.max_memory_allocated() / 2**30}
    import resource

    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def ratio(figures: dict) -> float:
    """ours / Trainer: the median of the alternated pairs' ratios, or the one pair's."""
    if figures.get("ratios"):
        return _median(figures["ratios"])
    return figures["ours"]["tokens_per_s"] / figures["anchor"]["tokens_per_s"]


def render(results: dict) -> str:
    lines = [
        SECTION,
        "",
        "`bench/train.py`: training tokens/s of our loop (`music-lm train`, windows from a",
        "corpus, everything included) against transformers' `Trainer` on the same GPT-2 and",
        "window shape (context 1,024), after warmup steps that are not timed. MFU: model",
        "FLOPs utilisation, 6 N + 12 L d T FLOPs per token against the GPU's dense bf16 peak.",
        "",
    ]
    for device, entry in results.items():
        lines += [
            f"**{device}** ({entry['date']}, torch {entry['torch']}, "
            f"{entry['precision']}{', compiled' if entry['compiled'] else ', eager'}, "
            f"{entry['steps']} timed steps)",
            "",
            "| preset | parameters | batch | ours tokens/s | Trainer tokens/s | ours / Trainer "
            "| ours MFU | Trainer MFU | ours peak memory |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for preset, r in entry["presets"].items():
            mfu = lambda x: f"{x:.1%}" if x is not None else "n/a"  # noqa: E731
            mem = r["ours"].get("peak_gib", r["ours"].get("peak_rss_gib"))
            lines.append(
                f"| {preset} | {r['parameters'] / 1e6:.1f} M | {r['batch']} "
                f"| {r['ours']['tokens_per_s']:,.0f} | {r['anchor']['tokens_per_s']:,.0f} "
                f"| {ratio(r):.2f}× "
                f"| {mfu(r['ours'].get('mfu'))} | {mfu(r['anchor'].get('mfu'))} | {mem:.2f} GiB |"
            )
        lines.append("")
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Put `text` in RESULTS.md in place of the section its first line names (the other
    benches call this too, each with its own heading), or at the end."""
    path = BENCH / "RESULTS.md"
    current = path.read_text()
    heading = text.split("\n", 1)[0]
    if f"\n{heading}\n" in current:
        start = current.index(f"\n{heading}\n") + 1
        end = current.find("\n## ", start + 1)
        current = current[:start] + text + ("\n" + current[end + 1 :] if end != -1 else "")
    else:
        current = current.rstrip() + "\n\n" + text
    path.write_text(current.rstrip() + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    gpu = torch.cuda.is_available()
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["small", "base"] if gpu else ["small"],
        choices=list(PRESETS),
    )
    parser.add_argument("--batch", type=int, default=32 if gpu else 8)
    parser.add_argument("--steps", type=int, default=30 if gpu else 8)
    parser.add_argument("--warmup", type=int, default=10 if gpu else 2, help="at least 1")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--processes", type=int, default=0,
                        help="N: one process against N (torchrun), the first preset")  # fmt: skip
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="pairs of runs (ours, Trainer), alternated; medians kept",
    )
    parser.add_argument("--finetune", action="store_true",
                        help="fine-tuning default against pretraining its shape")  # fmt: skip
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1")
    if args.finetune:
        data = args.data or synthetic_corpus(SYNTHETIC)
        figures = finetune_against_pretrain(data, args.batch, args.steps, args.warmup,
                                            args.repeats)  # fmt: skip
        if args.results != RESULTS:
            args.results.write_text(json.dumps(figures, indent=2) + "\n")
        return
    if args.processes:
        if args.processes < 2:
            parser.error(f"--processes must be at least 2, got {args.processes}")
        data = args.data or synthetic_corpus(SYNTHETIC)
        figures = processes(args.presets[0], data, args.batch, args.steps, args.warmup,
                            args.processes)  # fmt: skip
        if args.results != RESULTS:
            args.results.write_text(json.dumps(figures, indent=2) + "\n")
        return
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    if not args.render:
        compiled = args.compile == "on" or (args.compile == "auto" and gpu)
        data = args.data or synthetic_corpus(SYNTHETIC)
        entry = {
            "date": time.strftime("%Y-%m-%d"),
            "torch": torch.__version__,
            "precision": "bf16" if gpu else "fp32",
            "compiled": compiled,
            "steps": args.steps,
            "presets": {},
        }
        for preset in args.presets:
            model = new_model(model_config(preset, CONTEXT))
            fpt = flops_per_token(model, CONTEXT)
            figures = {
                "parameters": sum(p.numel() for p in model.parameters()),
                "batch": args.batch,
                "flops_per_token": fpt,
            }
            # On a loaded machine the speed drifts between runs: `--repeats` alternates ours
            # and the anchor and keeps each one's median, and the median of the pairs' ratios.
            runs: dict[str, list[dict]] = {"ours": [], "anchor": []}
            for _ in range(args.repeats):
                for name in ("ours", "anchor"):
                    if name == "ours":
                        r = ours(preset, data, args.batch, args.steps, args.warmup, compiled)
                    else:
                        r = anchor(preset, args.batch, args.steps, args.warmup, compiled)
                    r["mfu"] = r["tokens_per_s"] * fpt / peak() if peak() else None
                    runs[name].append(r)
                    print(
                        f"{preset} {name}: {r['tokens_per_s']:,.0f} tokens/s"
                        + (f", MFU {r['mfu']:.1%}" if r["mfu"] else ""),
                        flush=True,
                    )
            for name, rs in runs.items():
                figures[name] = min(rs, key=lambda r: abs(r["tokens_per_s"] - _median(
                    [x["tokens_per_s"] for x in rs])))  # fmt: skip
            ratios = [o["tokens_per_s"] / a["tokens_per_s"]
                      for o, a in zip(runs["ours"], runs["anchor"], strict=True)]  # fmt: skip
            figures["ratios"] = ratios
            print(f"{preset} ours / Trainer, per pair: {', '.join(f'{r:.2f}' for r in ratios)}; "
                  f"median {_median(ratios):.2f}", flush=True)  # fmt: skip
            entry["presets"][preset] = figures
        results[device_name()] = entry
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    if args.results == RESULTS:
        write_section(render(results))
    else:
        print(render(results))


if __name__ == "__main__":
    main()
