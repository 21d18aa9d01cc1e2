"""Score a model on a corpus split, beside count-based baselines on the same split.

    result = evaluate_model("default", "data/corpus", "test")
    print(format_evaluation(result))

The figures of the model card: loss (nats per token), perplexity, token accuracy and
bits per note, for the GPT-2 and for a unigram and an order-3 Markov model fitted on
the training split of the same corpus and scored on the same targets (every token of
the split but the first; see `music_lm.training.baselines`).
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
    {...}, "markov-3": {...}}}; each result has loss, perplexity, bits_per_note, tokens."""
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
    """A table of the results, one line per model."""
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
    return "\n".join(lines)
