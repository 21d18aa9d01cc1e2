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
from music_lm.model.folder import count_parameters, load_model
from music_lm.training.baselines import baseline_report
from music_lm.training.scoring import evaluate


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
    notes, "groups" and "sources" (`groups.breakdown`)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    corpus = Corpus(data)
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
    return {
        "model": loaded.path,
        "parameters": count_parameters(loaded.model),
        "context": loaded.context,
        "corpus": str(corpus.folder),
        "split": split,
        "results": results,
    }


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


def _group_table(results: dict[str, dict]) -> list[str]:
    """Bits per token by source and group, one column per model; each source ends with
    all its tokens and its bits per note."""
    names = list(results)
    first = results[names[0]]
    sources = list(first["sources"])
    blocks = [(source, [r["sources"].get(source, {}) for r in results.values()])
              for source in sources]  # fmt: skip
    if len(sources) > 1:  # every source together: the split's figures
        blocks.append(("all", [r | {"bits_per_token": r["loss"] / math.log(2)}
                               for r in results.values()]))  # fmt: skip
    width = max(len(s) for s, _ in blocks) + 2
    lines = [
        "bits per token by source and group (the last line of each source: bits per note)",
        f"{'source':<{width}}{'group':<10}{'tokens':>10}" + "".join(f"{n:>10}" for n in names),
    ]
    for source, figures in blocks:
        for group in figures[0]["groups"]:
            bits = [f.get("groups", {}).get(group, {}).get("bits_per_token") for f in figures]
            tokens = figures[0]["groups"][group]["tokens"]
            lines.append(f"{source:<{width}}{group:<10}{tokens:>10,}"
                         + "".join(_cell(b) for b in bits))  # fmt: skip
        lines.append(f"{source:<{width}}{'all':<10}{figures[0]['tokens']:>10,}"
                     + "".join(_cell(f.get("bits_per_token")) for f in figures))  # fmt: skip
        lines.append(f"{source:<{width}}{'per note':<10}{figures[0]['notes']:>10,}"
                     + "".join(_cell(f.get("bits_per_note")) for f in figures))  # fmt: skip
    return lines
