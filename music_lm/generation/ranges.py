"""Token id ranges: the half-open (lo, hi) spans the masks are built from, and the few
operations on them that the continuation state needs. Pure Python, no torch."""

from __future__ import annotations

from collections.abc import Iterable

from music_lm.tokens.rules import Ranges


def append_id(out: Ranges, token: int) -> None:
    """Add `token` (not below any id of `out`) to `out`, joining it to the last range."""
    if out and out[-1][1] == token:
        out[-1] = (out[-1][0], token + 1)
    else:
        out.append((token, token + 1))


def note_ranges(first_id: int, notes: Iterable[int]) -> Ranges:
    """Token id ranges of the note values `notes` (pitches or drum keys) of a family whose
    value 0 has id `first_id`."""
    out: Ranges = []
    for note in sorted(notes):
        append_id(out, first_id + note)
    return out


def intersect(a: Ranges, b: Ranges) -> Ranges:
    """The ids in both `a` and `b` (each sorted)."""
    out: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def without(ranges: Ranges, tokens: set[int]) -> Ranges:
    """`ranges` with `tokens` left out."""
    if not tokens:
        return ranges
    out: Ranges = []
    for lo, hi in ranges:
        start = lo
        for token in sorted(t for t in tokens if lo <= t < hi):
            if start < token:
                out.append((start, token))
            start = token + 1
        if start < hi:
            out.append((start, hi))
    return out
