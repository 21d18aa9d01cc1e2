"""Ship a run as the default model: fp16 weights into the package, evaluated, with its card.

    .venv/bin/python scripts/release_model.py runs/default --data data/corpus

1. The run's best-by-validation model is written in fp16 safetensors (with its tokenizer
   and music_lm.json) to music_lm/models/default/ (the folder `--model default` loads).
2. That shipped model (fp16 weights, computed in fp32) is evaluated on the corpus's test
   split beside a unigram and an order-3 Markov model fitted on the training split
   (`music_lm.training.evaluate`); the figures go to music_lm/models/default/eval.json.
3. docs/model-card.md is rendered from the run (train_config.json, metrics.jsonl,
   music_lm.json) and eval.json, and copied into the folder as its README.md.

`make default-model` trains the run with the recipe in the Makefile and calls this.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from music_lm.corpus.dataset import Corpus, WindowSampler  # noqa: E402
from music_lm.model.folder import (  # noqa: E402
    DEFAULT_MODEL_DIR,
    load_model,
    model_meta,
    replace_folder,
    save_model_folder,
)
from music_lm.tokens.vocab import VOCAB  # noqa: E402
from music_lm.training.evaluate import (  # noqa: E402
    DEBIAN_SET,
    evaluate_model,
    markdown_group_table,
)

CARD = ROOT / "docs" / "model-card.md"
# music21's test split scored by the 3.8 M model shipped before this one (evaluate, same
# split as today's corpus: 562,050 tokens); on the split it was released with, 6.18.
PREVIOUS_MUSIC21_BITS = 5.896
GROUP_TABLE_NAMES = {"gpt2": "this model", "markov-3": "order-3 Markov", "unigram": "unigram"}


def ship(run: Path, target: Path) -> dict:
    """The run's model in fp16 into `target` (written beside it, then swapped in)."""
    from transformers import AutoTokenizer

    loaded = load_model(run)
    meta = loaded.meta
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    fresh = model_meta(loaded.token_map, meta.get("training"), base=meta.get("base"))
    tokenizer = None if loaded.token_map.identity else AutoTokenizer.from_pretrained(run)
    save_model_folder(loaded.model, staging, fresh, tokenizer, dtype=torch.float16)
    replace_folder(staging, target)
    return meta


def music21_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("music21")
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def render_card(
    run: Path,
    target: Path,
    evaluation: dict,
    corpus: Corpus,
    hardware: str,
    note: str = "",
    reference_bits: float = PREVIOUS_MUSIC21_BITS,
    weights: Path | None = None,
) -> str:
    """The card of the model shipped from `weights` (a checkpoint of `run`; by default the
    run's best by validation)."""
    weights = weights or run
    meta = json.loads((weights / "music_lm.json").read_text())
    training = meta["training"]
    best_step = training["step"]
    # A model made in two stages (a pretraining run, then a fine-tune of it for the
    # fill-in-the-middle form): the card describes the pretraining, and the stage after it.
    final_config = json.loads((run / "train_config.json").read_text())
    pretraining = pretraining_run(run)
    config = json.loads((pretraining / "train_config.json").read_text())
    rows = [json.loads(x) for x in (pretraining / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    results = evaluation["results"]
    gpt2, unigram, markov = results["gpt2"], results["unigram"], results["markov-3"]
    manifest = corpus.manifest
    splits = manifest["splits"]
    hours = last["elapsed_s"] / 3600
    size = (target / "model.safetensors").stat().st_size
    model_config = json.loads((target / "config.json").read_text())
    on_cpu = "GPU" not in hardware and "NVIDIA" not in hardware
    precision = config["precision"]
    if precision == "auto":  # what auto took: the card is rendered where the run trained
        from music_lm.training.build import native_bf16

        precision = "bf16" if native_bf16(not on_cpu) else "fp32"
    passes = last["tokens_seen"] / manifest["splits"]["train"]["tokens"]
    groups = [(k.removeprefix("loss_"), v) for k, v in gpt2.items() if k.startswith("loss_")]
    lines = [
        "# Model card: the default music_lm model",
        "",
        "<!-- Rendered by scripts/release_model.py from the run and its evaluation; do not",
        "edit by hand. -->",
        "",
        "The model every `music-lm` command uses when no `--model` is given, shipped inside",
        "the package at `music_lm/models/default/` (fp16 safetensors, "
        f"{size / 2**20:.1f} MiB). It loads with",
        "`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`.",
        "",
        "## What it is",
        "",
        f"- A GPT-2 (transformers `GPT2LMHeadModel`, SDPA attention): "
        f"{evaluation['parameters'] / 1e6:.2f} M parameters, {model_config['n_layer']} layers, "
        f"width {model_config['n_embd']}, {model_config['n_head']} heads, context "
        f"{evaluation['context']} tokens, "
        f"vocabulary {len(VOCAB):,} "
        "(the grammar's).",
        (
            f"- **Trained on a CPU**: {hardware}. No GPU was used, so the model is sized for "
            f"about two and a half hours of two CPU cores ({passes:.1f} passes over the "
            "training split). A GPU run of the `small` or `base` preset (docs/training.md) "
            "would do better."
            if on_cpu
            else f"- Trained on {hardware}."
        ),
        f"- Training time {hours:.2f} h, {last['step']:,} steps of "
        f"{config['batch_size'] * config['grad_accum'] * evaluation['context']:,} tokens, "
        f"{last['tokens_seen'] / 1e6:.1f} M tokens seen "
        f"({last['tokens_seen'] / splits['train']['tokens']:.2f} passes over the training "
        f"split), {last['tokens_per_s']:,.0f} tokens/s at the end.",
        f"- Settings: AdamW ({'foreach' if on_cpu else 'fused'}, β 0.9/0.95, weight decay "
        f"{config['weight_decay']}), peak "
        f"learning rate {config['lr']:g} after {config['warmup_steps']} warmup steps, cosine "
        f"decay to {config['min_lr_ratio']:g}× the peak, gradient clipping "
        f"{config['grad_clip']}, dropout {config['dropout']}, random transposition within "
        f"±{config['transpose']} semitones (inside each instrument's range), "
        f"{'bf16 autocast (fp32 weights)' if precision == 'bf16' else 'fp32'}, seed "
        f"{config['seed']}.",
        f"- Augmentation on the fly: {augmentation_text(config)}.",
        *([f"- {note}"] if note else []),
        *fim_stage_lines(run, pretraining, final_config),
        f"- The shipped weights are those of step {best_step:,}"
        + (" of that fine-tune" if pretraining != run else "")
        + (", its last" if weights != run else ", the best validation loss")
        + f" ({training['val_loss']:.4f} nats per token on "
        f"{final_config['eval_windows']} validation windows spread over the split).",
        "",
        *data_section(manifest, config, corpus),
        "",
        "## Evaluation on the test split",
        "",
        f"All {gpt2['tokens']:,} test tokens but the first of the split are scored "
        f"({gpt2['notes']:,} of them notes), each given the tokens before it (the GPT-2: up to "
        f"{evaluation['context'] - 1:,}; the Markov model: 3). The baselines are fitted on the "
        "training split and smoothed (add-one unigram; Witten-Bell interpolation for the "
        "Markov model). Bits per note: all the bits spent on the split, divided by its notes.",
        "",
        "| model | loss (nats/token) | perplexity | bits per note | vs the model |",
        "|---|---|---|---|---|",
    ]
    for name, r in (("this model", gpt2), ("order-3 Markov", markov), ("unigram", unigram)):
        ratio = r["bits_per_note"] / gpt2["bits_per_note"]
        lines.append(f"| {name} | {r['loss']:.4f} | {r['perplexity']:.2f} "
                     f"| {r['bits_per_note']:.2f} | {ratio:.2f}× the bits |")  # fmt: skip
    lines += ["", *goals_section(results, reference_bits)]
    lines += [
        "",
        f"Token accuracy (the most likely token is the right one): {gpt2['accuracy']:.1%}.",
        "Loss by token group (nats per token):",
        "",
        "| " + " | ".join(name for name, _ in groups) + " |",
        "|" + "---|" * len(groups),
        "| " + " | ".join(f"{v:.3f}" for _, v in groups) + " |",
        "",
        "Bits per token by source and token group (a uniform guess: 10.58), and each "
        "source's bits per note:",
        "",
        *markdown_group_table(results, GROUP_TABLE_NAMES),
        "",
        "## What it can and can't do",
        "",
        *abilities(results, evaluation["parameters"]),
        "",
        "## Use and limits",
        "",
        "- Symbolic music only: token text of music_lm's codec (docs/token-format.md), on a grid "
        "of 1/24 quarter note. Sample it through `music-lm generate` (docs/generation.md), "
        "whose grammar-constrained decoding makes every output valid; unconstrained samples "
        "(`model.generate()` alone) can be invalid token text.",
        "- Fine-tune it on your own MIDI: `music-lm finetune --base default --data my_songs/ "
        "-o runs/mine`.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "make corpus          # data/corpus: music21 and the Debian packages",
        "make default-model   # train runs/default with the recipe, fine-tune it for",
        "                     # fill-in-the-middle (runs/default-fim), then this card",
        "```",
        "",
        f"Evaluated {time.strftime('%Y-%m-%d')} with `music-lm evaluate --data data/corpus "
        "--split test` (the figures are in `music_lm/models/default/eval.json`).",
        "",
    ]
    return "\n".join(lines)


def metrics_of(run: Path) -> str:
    """The run's metrics.jsonl; after a fine-tune of a pretraining run, the pretraining's rows
    and then the fine-tune's, its steps, tokens and time counted on from the pretraining's
    last row (with "stage": "fine-tune")."""
    text = (run / "metrics.jsonl").read_text()
    pretraining = pretraining_run(run)
    if pretraining == run:
        return text
    before = (pretraining / "metrics.jsonl").read_text()
    # the fine-tune started from the pretraining's best weights, which it shipped
    last = json.loads((pretraining / "music_lm.json").read_text())["training"]
    last = {**json.loads(before.splitlines()[-1]), **last}
    rows = []
    for line in text.splitlines():
        row = json.loads(line)
        for key in ("step", "tokens_seen", "elapsed_s"):
            if key in row:
                row[key] += last.get(key, 0)
        rows.append(json.dumps({**row, "stage": "fine-tune"}))
    return before + "".join(f"{row}\n" for row in rows)


def pretraining_run(run: Path) -> Path:
    """The run a fine-tune started from, when it is a run folder of its own (its
    train_config.json and metrics.jsonl); else `run` itself."""
    base = json.loads((run / "train_config.json").read_text()).get("base")
    if base and (Path(base) / "train_config.json").is_file():
        return Path(base)
    return run


def fim_stage_lines(run: Path, pretraining: Path, config: dict) -> list[str]:
    """The card's line on the stage after pretraining, if there was one."""
    if pretraining == run:
        share = config.get("fim_share") or 0
        return [f"- Fill-in-the-middle: {share:.0%} of the training pieces in the form "
                "(docs/training.md)."] if share else []  # fmt: skip
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    minutes = last["elapsed_s"] / 60
    return [
        f"- **Then fine-tuned for fill-in-the-middle** (`music-lm finetune --base "
        f"{pretraining}`, docs/training.md): {last['step']:,} steps, "
        f"{last['tokens_seen'] / 1e6:.1f} M tokens, {minutes:.0f} min, "
        f"{config.get('fim_share', 0):.0%} of the pieces in the fill-in-the-middle form and "
        f"the rest plain, the same data, mix and augmentation; peak learning rate "
        f"{config['lr']:g} after {config['warmup_steps']} warmup steps, dropout "
        f"{config['dropout']}. `hole` and `fill` joined the vocabulary there (their "
        "embeddings started as the mean of the others). `music-lm infill --bars` reads the "
        "bars after the gap with it."
    ]


def augmentation_text(config: dict) -> str:
    """The run's on-the-fly augmentation (corpus/augment.py), in words."""
    parts = []
    if config.get("velocity_level"):
        parts.append(f"a dynamic level per piece (± {config['velocity_level']} velocity bins)")
    if config.get("velocity_ramp"):
        parts.append(f"crescendo or diminuendo over a window (± {config['velocity_ramp']} bins)")
    if config.get("velocity_jitter"):
        share = config.get("velocity_jitter_share", 1.0)
        parts.append(f"per-note velocity jitter (± {config['velocity_jitter']} bin"
                     + (f", {share:.0%} of pieces)" if share < 1 else ")"))  # fmt: skip
    if config.get("revoice"):
        parts.append(f"music21's piano and voice parts re-voiced onto General MIDI programs "
                     f"whose range fits ({config['revoice']:.0%} of windows)")  # fmt: skip
    if config.get("tempo_percent"):
        parts.append(f"tempo ± {config['tempo_percent']:g} %")
    return "; ".join(parts) if parts else "none but transposition"


def source_shares(corpus: Corpus, weights: dict[str, float]) -> dict[str, float]:
    """Each source's expected share of the training windows under the run's weights."""
    sampler = WindowSampler(corpus, "train", weights=weights or None)
    shares: dict[str, float] = {}
    for key, share in sampler.mixture().items():
        source = key.rsplit(":", 1)[0]
        shares[source] = shares.get(source, 0.0) + share
    return shares


def data_section(manifest: dict, config: dict, corpus: Corpus) -> list[str]:
    """The card's Data section: every source with its licence, pieces and share of the
    training windows (from the manifest and the run's mixing weights)."""
    sources = manifest["sources"]
    shares = source_shares(corpus, config.get("weights") or {})
    splits = manifest["splits"]
    lines = [
        "## Data",
        "",
        "Built by `make corpus`: music21's bundled corpus (music21 "
        f"{music21_version()}) and the MIDI files of nine Debian packages of free game and "
        "program music, fetched with `apt-get download` and unpacked with `dpkg -x` (nothing "
        "installed), split by piece within each source. Each package was checked to hold "
        "music (not game charts); each piece keeps its package, file and licence in the "
        "corpus manifest (`origins`). In all: "
        f"train {splits['train']['pieces']:,} pieces / {splits['train']['tokens']:,} tokens, "
        f"valid {splits['valid']['pieces']:,} / {splits['valid']['tokens']:,}, test "
        f"{splits['test']['pieces']:,} / {splits['test']['tokens']:,}.",
        "",
        "| source | version | licence | pieces (train / valid / test) | training tokens "
        "| share of training windows |",
        "|---|---|---|---|---:|---:|",
    ]
    for entry in sources:
        if entry["spec"] == "music21":
            version, licence = music21_version(), "public domain (music21's corpus)"
        else:
            version = entry.get("version", "")
            # a copyright file's "A | B" means either licence; "|" would split the table cell
            licences = (name.replace(" | ", " or ") for name in entry.get("licences", {}))
            licence = ", ".join(sorted(licences)) or "— (no piece read)"
        counts = " / ".join(f"{entry[split]['pieces']:,}" for split in ("train", "valid", "test"))
        failed = f" ({entry['failed']} unreadable)" if entry.get("failed") else ""
        lines.append(
            f"| `{entry['spec']}` | {version} | {licence} | {counts}{failed} "
            f"| {entry['train']['tokens']:,} | {shares.get(entry['source'], 0.0):.1%} |"
        )
    weights = config.get("weights") or {}
    if weights:
        named = ", ".join(f"`{k}={v:g}`" for k, v in weights.items())
        lines += [
            "",
            f"Mixing weights {named} (`none`: the style of the Debian packages' pieces, which "
            "carry no style word): the band music is seen far more often than its share of "
            "the tokens; within a group, a piece is drawn in proportion to its length.",
        ]
    lines += [
        "",
        "music21's part is public domain music (folk song collections, Bach chorales, "
        "Palestrina, Renaissance and Classical pieces); the styles, by pieces:",
        "",
        ", ".join(f"{k} {v:,}" for k, v in manifest["styles"].items()) + ".",
    ]
    return lines


@dataclass(frozen=True)
class Goal:
    """One figure the shipped model must reach: `measured` at most `target`."""

    text: str
    measured: float
    target: float
    short: str = ""  # the verdict's name for it

    @property
    def met(self) -> bool:
        return self.measured <= self.target


def goals(results: dict, reference_bits: float) -> list[Goal]:
    """The release goals, from the evaluation: the Debian packages' test pieces together
    ("debian:*") and music21's, each against the order-3 Markov model as well."""
    gpt2, markov = results["gpt2"], results["markov-3"]
    band, band_markov = gpt2["source_sets"][DEBIAN_SET], markov["source_sets"][DEBIAN_SET]
    music21 = gpt2["sources"]["music21"]["bits_per_note"]
    music21_markov = markov["sources"]["music21"]["bits_per_note"]
    bits = {g: band["groups"][g]["bits_per_token"] for g in ("drum", "velocity", "pitch")}
    return [
        Goal(
            "Debian test pieces: bits per note", band["bits_per_note"], 12.0, "band bits per note"
        ),
        Goal("Debian test pieces: bits per drum token", bits["drum"], 5.0, "drums"),
        Goal("Debian test pieces: bits per velocity token", bits["velocity"], 3.5, "velocities"),
        Goal("Debian test pieces: bits per pitch token", bits["pitch"], 4.5, "band pitches"),
        Goal(
            f"music21 test split: bits per note (5 % over the {reference_bits:.2f} of the "
            "model shipped before, on this split)",
            music21,
            round(reference_bits * 1.05, 2),
            "music21 within 5 %",
        ),
        Goal(
            "Debian test pieces: bits per note, as a share of the order-3 Markov model's "
            f"({band_markov['bits_per_note']:.2f}); clearly ahead: at most 85 %",
            round(band["bits_per_note"] / band_markov["bits_per_note"], 3),
            0.85,
            "ahead of Markov on band music",
        ),
        Goal(
            "music21 test split: bits per note, as a share of the order-3 Markov model's "
            f"({music21_markov:.2f}); clearly ahead: at most 85 %",
            round(music21 / music21_markov, 3),
            0.85,
            "ahead of Markov on music21",
        ),
    ]


def goals_section(results: dict, reference_bits: float) -> list[str]:
    """The goals table and the verdict it implies."""
    table = goals(results, reference_bits)
    lines = ["| goal | target | measured | met |", "|---|---:|---:|---|"]
    for goal in table:
        lines.append(f"| {goal.text} | ≤ {goal.target:g} | {goal.measured:.2f} "
                     f"| {'yes' if goal.met else '**no**'} |")  # fmt: skip
    missed = [goal.short or goal.text for goal in table if not goal.met]
    if not missed:
        verdict = f"**Verdict: the model meets all {len(table)} goals.**"
    else:
        verdict = (
            f"**Verdict: the model meets {len(table) - len(missed)} of {len(table)} goals; "
            f"it misses: {'; '.join(missed)}.**"
        )
    return [*lines, "", verdict]


def abilities(results: dict, parameters: int) -> list[str]:
    """Five lines on what the model can and can't do, with its figures (the README's
    section of the same name repeats them; tests/test_docs.py keeps the two in step)."""
    gpt2 = results["gpt2"]
    band = gpt2["source_sets"][DEBIAN_SET]
    music21 = gpt2["sources"]["music21"]["bits_per_note"]
    return [
        f"- **Folk tunes, chorales, Renaissance polyphony**: its best ({music21:.1f} bits per "
        "note on music21's test pieces).",
        f"- **Band MIDI with drums and dynamics** (game and program music from Debian): "
        f"{band['bits_per_note']:.1f} bits per note on pieces it never saw, "
        f"{band['groups']['drum']['bits_per_token']:.1f} per drum token.",
        f"- **Small**: {parameters / 1e6:.1f} M parameters trained on two CPU cores; it "
        "holds a groove or a phrase for a few bars, not a song's verse-chorus form.",
        "- **Never heard**: jazz voicings, dance and electronic music, orchestral scores; "
        "fine-tune it on your own MIDI for those.",
        "- **Always valid**: key, range, bars, instruments and the drum kit hold by "
        "construction in the decoder, whatever the model would prefer.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "corpus")
    parser.add_argument("--target", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--hardware", default=None, help="Where the run trained (for the card).")
    parser.add_argument("--note", default="", help="A line on the run's history, for the card.")
    parser.add_argument(
        "--step",
        type=int,
        default=None,
        help="Ship the run's checkpoint of this step rather than its best by validation "
        "(a fill-in-the-middle fine-tune: its validation windows are plain).",
    )
    parser.add_argument(
        "--reference-bits",
        type=float,
        default=PREVIOUS_MUSIC21_BITS,
        help="music21 test bits per note of the model this one replaces (the 5 %% goal).",
    )
    args = parser.parse_args()
    weights = args.run / f"checkpoint-{args.step}" if args.step else args.run
    ship(weights, args.target)
    # The curves travel with the model: the page's Training view draws them.
    (args.target / "metrics.jsonl").write_text(metrics_of(args.run))
    evaluation = evaluate_model(args.target, args.data, "test", baselines=True)
    evaluation["model"] = "default"
    (args.target / "eval.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    hardware = args.hardware or f"{cpu_name()}, {torch.get_num_threads()} threads"
    card = render_card(
        args.run,
        args.target,
        evaluation,
        Corpus(args.data),
        hardware,
        args.note,
        args.reference_bits,
        weights,
    )
    CARD.write_text(card)
    (args.target / "README.md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
