"""Score a model on a corpus split, beside count-based baselines on the same split.

    result = evaluate_model("default", "data/corpus", "test")
    print(format_evaluation(result))

The figures of the model card: loss (nats per token), perplexity, token accuracy and
bits per note, for the GPT-2 and for a unigram and an order-3 Markov model fitted on
the training split of the same corpus and scored on the same targets (every token of
the split but the first; see `music_lm.training.baselines`).

Each model's figures also hold "groups" (bits per token and per note by token group:
pitch, drum, velocity, duration, timing, track, header) and "sources" (the same figures
for the pieces of each source of the corpus: music21, a folder's tag, a Debian package):
see `music_lm.training.groups`.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from music_lm.corpus.dataset import Corpus
from music_lm.corpus.sources import DEBIAN, CorpusError
from music_lm.model.folder import count_parameters, load_model
from music_lm.training.baselines import baseline_report
from music_lm.training.groups import combine
from music_lm.training.scoring import evaluate

DEBIAN_SET = f"{DEBIAN}:*"  # every Debian package of a corpus (a tag holds no ':')


def evaluate_model(
    model: str | Path = "default",
    data: str | Path = "data/corpus",
    split: str = "test",
    baselines: bool = True,
    batch_size: int = 8,
    device: str | None = None,
    max_windows: int = 0,
) -> dict:
    """{"model": ..., "corpus": ..., "split": ..., "results": {"gpt2": {...}, "unigram":
    {...}, "markov-3": {...}}}; each result has loss, perplexity, bits_per_note, tokens,
    notes, "groups", "sources" (`groups.breakdown`) and "source_sets" (several sources
    together: "debian:*", every Debian package, with the names of its "members")."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    corpus = Corpus(data)
    _check_split(corpus, split)
    loaded = load_model(model, device)
    started = time.perf_counter()
    figures = evaluate(loaded.model, [corpus], split, loaded.context, max_windows, batch_size,
                       loaded.token_map, device)  # fmt: skip
    figures["seconds"] = time.perf_counter() - started
    results = {"gpt2": figures}
    if baselines:
        results |= baseline_report(corpus, "train", split, orders=(0, 3))
        for figures in results.values():  # NaN (no notes) is not JSON: None instead
            for key, value in figures.items():
                if isinstance(value, float) and math.isnan(value):
                    figures[key] = None
    sets = source_sets(corpus, list(results["gpt2"]["sources"]))
    for figures in results.values():
        figures["source_sets"] = {
            name: combine([figures["sources"][s] for s in members]) | {"members": members}
            for name, members in sets.items()
        }
    return {
        "model": loaded.path,
        "parameters": count_parameters(loaded.model),
        "context": loaded.context,
        "corpus": str(corpus.folder),
        "split": split,
        "results": results,
    }


def _check_split(corpus: Corpus, split: str) -> None:
    """CorpusError in one line when `split` holds no piece, saying which split to use (a
    corpus built by train or finetune from a folder of under 20 pieces has no test split)."""
    if corpus.split(split):
        return
    others = [s for s in ("valid", "test", "train") if s != split and corpus.split(s)]
    hint = f": use --split {others[0]}" if others else ""
    raise CorpusError(f"{corpus.folder}: the {split} split holds no pieces{hint}")


def source_sets(corpus: Corpus, sources: list[str]) -> dict[str, list[str]]:
    """The sets of `sources` reported together as well as one by one: "debian:*", the
    corpus's Debian packages, when there are two or more but not every source."""
    debian = [
        entry["source"]
        for entry in corpus.manifest.get("sources", [])
        if str(entry.get("spec", "")).startswith(f"{DEBIAN}:") and entry["source"] in sources
    ]
    return {DEBIAN_SET: debian} if 1 < len(debian) < len(sources) else {}


def format_evaluation(result: dict) -> str:
    """A table of the results, one line per model, then one of the bits per token of each
    model, one line per source and group."""
    lines = [
        f"{result['model']} ({result['parameters'] / 1e6:.2f} M parameters, context "
        f"{result['context']}) on {result['corpus']}, {result['split']} split",
        f"{'model':<10} {'loss':>7} {'ppl':>7} {'bits/note':>10} {'tokens':>10}",
    ]
    for name, r in result["results"].items():
        bits = r.get("bits_per_note")
        bits_text = f"{bits:10.3f}" if bits is not None else f"{'-':>10}"
        lines.append(f"{name:<10} {r['loss']:7.4f} {r['perplexity']:7.2f} {bits_text} "
                     f"{r['tokens']:10,}")  # fmt: skip
    if all("sources" in r for r in result["results"].values()):
        lines += ["", *_group_table(result["results"])]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return f"{value:>10.2f}" if value is not None else f"{'-':>10}"


Row = tuple[str, str, int, list[float | None]]  # source, group, tokens, a figure per model


def group_rows(results: dict[str, dict]) -> list[Row]:
    """Bits per token by source and group, a figure per model: for each source, then each
    set of sources ("debian:*"), then all of them (when there are several), a row per group
    with tokens, then "all" (bits per token over all its tokens) and "per note" (bits per
    note, the count being its notes)."""
    first = next(iter(results.values()))
    sources = list(first["sources"])
    blocks = [(source, [r["sources"].get(source, {}) for r in results.values()])
              for source in sources]  # fmt: skip
    for name in first.get("source_sets", {}):
        blocks.append((name, [r["source_sets"][name] for r in results.values()]))
    if len(sources) > 1:  # every source together: the split's figures
        blocks.append(("all", [r | {"bits_per_token": r["loss"] / math.log(2)}
                               for r in results.values()]))  # fmt: skip
    rows: list[Row] = []
    for source, figures in blocks:
        for group, counted in figures[0]["groups"].items():
            bits = [f.get("groups", {}).get(group, {}).get("bits_per_token") for f in figures]
            rows.append((source, group, counted["tokens"], bits))
        rows.append((source, "all", figures[0]["tokens"],
                     [f.get("bits_per_token") for f in figures]))  # fmt: skip
        rows.append((source, "per note", figures[0]["notes"],
                     [f.get("bits_per_note") for f in figures]))  # fmt: skip
    return rows


def _group_table(results: dict[str, dict]) -> list[str]:
    rows = group_rows(results)
    width = max(len(source) for source, *_ in rows) + 2
    lines = [
        "bits per token by source and group (the last line of each source: bits per note)",
        f"{'source':<{width}}{'group':<10}{'tokens':>10}" + "".join(f"{n:>10}" for n in results),
    ]
    for source, group, tokens, bits in rows:
        lines.append(f"{source:<{width}}{group:<10}{tokens:>10,}" + "".join(map(_cell, bits)))
    return lines


def markdown_group_table(results: dict[str, dict], names: dict[str, str]) -> list[str]:
    """`group_rows` as a Markdown table (for the model card), the models in the order and
    under the names of `names` (result key -> column title)."""
    picked = {key: results[key] for key in names}
    lines = [
        "| source | group | tokens | " + " | ".join(names.values()) + " |",
        "|---|---|---:|" + "---:|" * len(names),
    ]
    for source, group, tokens, bits in group_rows(picked):
        figures = " | ".join(f"{b:.2f}" if b is not None else "-" for b in bits)
        label = f"**{group}** (bits per note)" if group == "per note" else group
        lines.append(f"| {source} | {label} | {tokens:,} | {figures} |")
    return lines
