"""The fill-in-the-middle form of a piece: a run of bars moved to the end, so that a model
reads what comes after a gap before it writes the gap.

    plain:  HEADER bars[:a]  bars[a:b]  bars[b:]  end
    fim:    HEADER bars[:a]  hole TEMPO TS [KEY] bars[b:]  fill bars[a:b]  end
                   prefix          suffix                      middle

`hole` restates the tempo, meter and key in force where the suffix begins, as a header
does (a meter change at the suffix's first bar, and a tempo or key change at its @0, move
into it), so the suffix reads as a piece of its own. `fill` returns to where the prefix
ended, and the middle's bars continue it. The grammar reads the form (`GrammarState(fim=True)`,
docs/token-format.md); `from_fim` gives the plain piece back, word for word.

Pure Python, no torch: the training windows (`music_lm.corpus.dataset`) and the infill
prompt (`music_lm.generation.infill`) both build it here.
"""

from __future__ import annotations

from collections.abc import Sequence

from music_lm.tokens.vocab import VOCAB

R = VOCAB.ranges
_FAM = VOCAB.family_of
BAR, END = VOCAB.ids["bar"], VOCAB.ids["end"]
HOLE, FILL = VOCAB.ids["hole"], VOCAB.ids["fill"]
_POS0 = R["pos"].start


def _in_force(ids: Sequence[int], family: str) -> int | None:
    """The last word of `family` in `ids` (the value in force at their end), or None."""
    for token in reversed(ids):
        if _FAM[token] == family:
            return token
    return None


def to_fim(ids: Sequence[int], start: int, stop: int) -> list[int]:
    """The fill-in-the-middle form of a plain piece `ids` (a header and whole bars, with or
    without `end`) whose middle is the words start..stop: `start` is the middle's first
    `bar`; `stop` is the suffix's first `bar`, or the `end` or length of `ids` when the
    middle runs to the last bar. The text ends with `end`."""
    ids = list(ids)
    body_end = len(ids) - 1 if ids and ids[-1] == END else len(ids)
    if not 0 < start < stop <= body_end or ids[start] != BAR:
        raise ValueError(f"a middle is whole bars: got words {start}..{stop} of {len(ids)}")
    if stop < body_end and ids[stop] != BAR:
        raise ValueError(f"the suffix starts at a bar, got {VOCAB.tokens[ids[stop]]!r}")
    before = ids[:stop]
    tempo, ts, key = (_in_force(before, f) for f in ("tempo", "ts", "key"))
    suffix = ids[stop:body_end]
    if suffix:  # the suffix's first bar: its meter, and the tempo or key at its @0, restated
        at, drop = 1, []
        if at < len(suffix) and _FAM[suffix[at]] == "ts":
            ts, at = suffix[at], at + 1
            drop.append(at - 1)
        if at < len(suffix) and suffix[at] == _POS0:
            onset, at = at, at + 1
            if at < len(suffix) and _FAM[suffix[at]] == "tempo":
                tempo, at = suffix[at], at + 1
                drop.append(at - 1)
            if at < len(suffix) and _FAM[suffix[at]] == "key":
                key, at = suffix[at], at + 1
                drop.append(at - 1)
            empty = at >= len(suffix) or suffix[at] == BAR or _FAM[suffix[at]] == "pos"
            if drop and drop[-1] == at - 1 and empty:
                drop.append(onset)  # the onset held nothing else
        suffix = [t for i, t in enumerate(suffix) if i not in drop]
    restated = [tempo, ts] + ([key] if key is not None else [])
    return [*ids[:start], HOLE, *restated, *suffix, FILL, *ids[start:stop], END]


def split_fim(ids: Sequence[int]) -> tuple[list[int], list[int], list[int], list[int]]:
    """(prefix, restated words, suffix bars, middle bars) of a fill-in-the-middle text; the
    middle without its `end`."""
    ids = list(ids)
    if HOLE not in ids or FILL not in ids:
        raise ValueError("not a fill-in-the-middle text: it needs `hole` and `fill`")
    hole, fill = ids.index(HOLE), ids.index(FILL)
    after = hole + 1
    while after < fill and _FAM[ids[after]] in ("tempo", "ts", "key"):
        after += 1
    middle = ids[fill + 1 :]
    if middle and middle[-1] == END:
        middle = middle[:-1]
    return ids[:hole], ids[hole + 1 : after], ids[after:fill], middle


def from_fim(ids: Sequence[int]) -> list[int]:
    """The plain piece of a fill-in-the-middle text (`to_fim`'s inverse): prefix, middle,
    suffix and `end`, the suffix's restated tempo, meter and key written back as the
    changes they are after the middle."""
    prefix, restated, suffix, middle = split_fim(ids)
    if not suffix:
        return [*prefix, *middle, END]
    before = prefix + middle
    tempo, ts, key = (_in_force(before, f) for f in ("tempo", "ts", "key"))
    new = {_FAM[t]: t for t in restated}
    if "key" not in new and key is not None:
        raise ValueError("the suffix restates no key, but one is in force after the middle")
    head = [BAR]
    if new["ts"] != ts:
        head.append(new["ts"])
    changes = [new[f] for f, was in (("tempo", tempo), ("key", key)) if f in new and new[f] != was]
    rest = suffix[1:]
    if rest and _FAM[rest[0]] == "ts":
        raise ValueError("the suffix's first bar states a meter: `hole` restates it")
    if changes:
        if rest and rest[0] == _POS0:
            head += [_POS0, *changes]
            rest = rest[1:]
        else:
            head += [_POS0, *changes]
    return [*before, *head, *rest, END]
