"""What the music after a gap is worth to a model: bits per note of a region's true bars given
what came before only, against given both sides in the fill-in-the-middle form.

    before = score_middles(loaded, regions, both_sides=False)
    both = score_middles(loaded, regions, both_sides=True)

A region is (piece ids, start, stop): the words of its bars, as `music_lm.tokens.fim.to_fim`
takes them. Before only, the model reads the prefix then the region, as a continuation does;
both sides, it reads the prefix, `hole`, the suffix and `fill`, then the region, as
`music-lm infill --bars` prompts it. Each sequence is cut to the model's context as the
sampler cuts one (`window_of`: the prefix's earliest bars go first, then the suffix's
latest), and only the region's words are scored, so the two figures count the same notes.
The region's first word, its `bar`, is left out of both: after `fill` the grammar forces
it, while before only it also says whether the prefix's last bar has ended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch.nn.functional import cross_entropy

from music_lm.corpus.windows import window_of
from music_lm.tokens.fim import FILL, to_fim
from music_lm.tokens.vocab import VOCAB

_IS_NOTE = VOCAB.is_note


@dataclass(frozen=True)
class MiddleScore:
    bits: float  # over the regions' words
    notes: int
    words: int
    regions: int

    @property
    def bits_per_note(self) -> float:
        return self.bits / self.notes if self.notes else math.nan


def middle_sequence(
    ids: Sequence[int], start: int, stop: int, context: int, both_sides: bool
) -> list[int]:
    """The sequence a model reads for the region `start..stop` of `ids`, its words last."""
    ids = list(ids)
    middle = ids[start:stop]
    if both_sides:
        fim = to_fim(ids, start, stop)
        head = fim[: fim.index(FILL) + 1]
    else:
        head = ids[:start]
    window, _first = window_of(head + middle, context)
    return window


@torch.inference_mode()
def score_middles(
    loaded, regions: Iterable[tuple[Sequence[int], int, int]], both_sides: bool,
    device: str | torch.device = "cpu",
) -> MiddleScore:  # fmt: skip
    """The bits a model spends on the regions' words (`middle_sequence` for each)."""
    model, token_map, context = loaded.model, loaded.token_map, loaded.context
    bits, notes, words, count = 0.0, 0, 0, 0
    for ids, start, stop in regions:
        sequence = middle_sequence(ids, start, stop, context, both_sides)
        length = stop - start - 1  # the region's words after its first `bar`
        if length + 1 >= len(sequence):
            raise ValueError(f"a region of {length + 1} words does not fit a context of {context}")
        batch = torch.tensor([sequence], dtype=torch.long, device=device)
        logits = model(input_ids=token_map.to_model(batch[:, :-1]), use_cache=False).logits
        logits = token_map.music_logits(logits).float()[0, -length:]
        targets = batch[0, -length:]
        bits += float(cross_entropy(logits, targets, reduction="sum")) / math.log(2)
        notes += sum(_IS_NOTE[t] for t in sequence[-length:])
        words += length
        count += 1
    return MiddleScore(bits, notes, words, count)
