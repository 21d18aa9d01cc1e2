"""The loop guard: no run of one short block of tokens repeated over and over.

A language model that loops writes the same few tokens again and again (`E6 E6 E6 ...`, or
`bar @0 d:4 v:80 C4` bar after bar). `RepeatGuard` follows the new tokens and names the
tokens that would stretch such a run past `limit` tokens, so the continuation state can
leave them out while another token is allowed.

Bounded: a run is a stretch in which every token equals the one `period` tokens before it,
for the periods 1..MAX_PERIOD; the guard keeps, per period, the length of the current run
(an integer updated in O(1) per token) and the last MAX_PERIOD tokens. A step costs
O(MAX_PERIOD) integer comparisons, and at most MAX_PERIOD tokens are ever banned at once.
Longer periods are left alone on purpose: a bar of music repeated is a longer block, and
repetition at that scale is music, not a loop. Pure Python, no torch.
"""

from __future__ import annotations

MAX_PERIOD = 8


class RepeatGuard:
    """Runs of repeated tokens among the tokens taken, against a limit in tokens."""

    __slots__ = ("last", "limit", "runs")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.last: list[int] = []  # the last MAX_PERIOD tokens, oldest first
        # runs[p - 1]: how many of the latest tokens each equal the token p before them
        self.runs = [0] * MAX_PERIOD

    def take(self, token: int) -> None:
        last, runs = self.last, self.runs
        for period in range(1, min(len(last), MAX_PERIOD) + 1):
            runs[period - 1] = runs[period - 1] + 1 if last[-period] == token else 0
        last.append(token)
        if len(last) > MAX_PERIOD:
            del last[0]

    def banned(self) -> set[int]:
        """Tokens that would make a run of a block of 1..MAX_PERIOD tokens, repeated
        (twice or more), longer than `limit` tokens (the run counts its first block too)."""
        if self.limit is None:
            return set()
        last, runs, limit = self.last, self.runs, self.limit
        out = set()
        for period in range(1, min(len(last), MAX_PERIOD) + 1):
            run = runs[period - 1] + 1  # with the token: its block is repeated once it is p
            if run >= period and run + period > limit:
                out.add(last[-period])
        return out

    def copy(self) -> RepeatGuard:
        new = RepeatGuard.__new__(RepeatGuard)
        new.limit = self.limit
        new.last = list(self.last)
        new.runs = list(self.runs)
        return new
