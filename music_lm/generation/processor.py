"""The masks of `ContinuationState` as a transformers LogitsProcessor, for
`model.generate()` on a model of our own vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from music_lm.generation.constraints import Constraints
from music_lm.generation.state import ContinuationState
from music_lm.tokens.rules import END


def grammar_logits_processor(
    seed_ids: Sequence[int], constraints: Constraints | None = None, max_new_tokens: int = 2048
):
    """A transformers LogitsProcessor that applies the masks of `ContinuationState` inside
    `model.generate(input_ids=seed, logits_processor=[...], eos_token_id=END id, ...)`, for
    a model of our own vocabulary. Its answer depends only on the ids it is given: a row
    that extends the ids of the last call is advanced, any other is parsed again."""
    from transformers import LogitsProcessor  # transformers loads only when one is asked for

    class GrammarLogitsProcessor(LogitsProcessor):
        def __init__(self) -> None:
            self.seed = list(seed_ids)
            self.start = ContinuationState(self.seed, constraints or Constraints())
            self.rows: dict[int, tuple[list[int], ContinuationState]] = {}

        def _state(self, row: int, new: list[int]) -> ContinuationState:
            seen, state = self.rows.get(row, ([], None))
            if state is None or new[: len(seen)] != seen:
                seen, state = [], self.start.copy()
            for token in new[len(seen) :]:
                if not state.done:
                    state.advance(token)
            self.rows[row] = (list(new), state)
            return state

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            mask = torch.zeros(scores.shape, dtype=torch.bool)
            for row in range(input_ids.shape[0]):
                new = input_ids[row, len(self.seed) :].tolist()
                state = self._state(row, new)
                if state.done:
                    mask[row, END] = True
                    continue
                for lo, hi in state.allowed_ranges(max_new_tokens - len(new)):
                    mask[row, lo:hi] = True
            return scores.masked_fill(~mask.to(scores.device), float("-inf"))

    return GrammarLogitsProcessor()
