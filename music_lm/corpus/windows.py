"""The window of a piece a model reads when the piece outgrows its context: the header and
the latest bars that fit (a header restated at that bar, as in training), or for a sequence
in the fill-in-the-middle form, the middle whole and as much of both sides as fits. The
sampler re-windows with it; `music_lm.training.fim_scoring` cuts its sequences so too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from music_lm.corpus.dataset import piece_from_bar
from music_lm.tokens.fim import FILL, HOLE
from music_lm.tokens.rules import BAR


def window_of(ids: Sequence[int], limit: int) -> tuple[list[int], int]:
    """What the model reads of a piece longer than its context: the header and the latest
    bars that fit in `limit` tokens (a header restated at that bar, as in training).
    Returns (window, index in `ids` of the first body token kept)."""

    ids = list(ids)
    if len(ids) <= limit:
        return ids, 0
    if HOLE in ids:
        return _fim_window_of(ids, limit)
    array = np.asarray(ids, dtype=np.int64)
    bar_starts = np.flatnonzero(array == BAR)
    for start in bar_starts[1:]:
        window = piece_from_bar(array, int(start), keep_tracks=True)
        if len(window) <= limit:
            return window.tolist(), int(start)
    # One bar longer than the window: its header, then as much of the end as fits.
    header = ids[: int(bar_starts[0])] if len(bar_starts) else ids[:8]
    keep = limit - len(header)
    if keep < 1:  # a header longer than the window: the latest tokens alone
        return ids[-limit:], len(ids) - limit
    return header + ids[-keep:], len(ids) - keep


def _fim_window_of(ids: list[int], limit: int) -> tuple[list[int], int]:
    """The window of a fill-in-the-middle sequence (prefix, `hole` … `fill`, the middle so
    far): the middle whole, the suffix's earliest bars in up to half the room left (more
    when the prefix needs less), the prefix's latest bars in the rest. A middle that leaves
    no room for both sides is read as a plain piece: prefix and middle."""
    hole, fill = ids.index(HOLE), ids.index(FILL)
    prefix, suffix, middle = ids[:hole], ids[hole : fill + 1], ids[fill + 1 :]
    header = prefix.index(BAR) if BAR in prefix else len(prefix)
    room = limit - len(middle)
    if room >= 2 * (header + _SUFFIX_HEAD):
        kept = _cut_suffix(suffix, max(room // 2, room - len(prefix)))
        window, first = window_of(prefix, room - len(kept))
        if first and prefix[first] != BAR:  # not one whole bar of the prefix fits:
            window, first = prefix[:header], len(prefix)  # its header, and more suffix
            kept = _cut_suffix(suffix, room - header)
        return window + kept + middle, first
    return window_of(prefix + middle, limit)


_SUFFIX_HEAD = 6  # hole, tempo, meter, key, fill and a word to spare


def _cut_suffix(suffix: list[int], room: int) -> list[int]:
    """`hole` … `fill` cut to `room` tokens: the restated words and the suffix's earliest
    whole bars that fit, then `fill`."""
    if len(suffix) <= room:
        return suffix
    bars = [i for i, t in enumerate(suffix) if t == BAR]
    if not bars:
        return suffix
    fits = [i for i in bars if i + 1 <= room] or bars[:1]
    return [*suffix[: fits[-1]], FILL]
