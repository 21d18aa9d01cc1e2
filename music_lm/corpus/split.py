"""Which pieces a corpus keeps, and where: a piece whose notes equal an earlier one's
(also transposed) is a duplicate, the rest are split into train, validation and test by a
hash of their content (a small source gets at least a test and a validation piece, see
`_ensure_held_out`), and each gets the range it may be transposed over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from music_lm.corpus.config import BuildConfig
from music_lm.corpus.dataset import Piece
from music_lm.corpus.encoding import Encoding
from music_lm.corpus.sources import Item
from music_lm.midi.instruments import transpose_limits
from music_lm.tokens.vocab import VOCAB

TOKEN_DTYPE = np.uint16

_PITCH = VOCAB.ranges["pitch"]
_KEY = VOCAB.ranges["key"]
_STYLE_POSITION = 1  # "piece style:X ...": the style word is always the second token
# Normalised pitches and modes are numbered from here: past every id a piece's tokens hold
# (the fim words, 1530 and 1531, are never in a piece; they mark a training form of it).
# Fixed, not len(VOCAB): a piece's fingerprint, and with it its split, must not move when
# the vocabulary grows, or a model's test pieces would land in the next one's training data.
_NORMALISED_FROM = 1530


def fingerprint(ids: np.ndarray) -> str:
    """A hash of a piece's tokens that ignores its style and its transposition: the
    pitches are shifted so the lowest is 0 and key signatures keep only their mode."""
    ids = ids.astype(np.int32)  # a copy
    ids[_STYLE_POSITION] = 0
    pitched = (ids >= _PITCH.start) & (ids < _PITCH.stop)
    if pitched.any():
        ids[pitched] += _NORMALISED_FROM - ids[pitched].min()
    keyed = (ids >= _KEY.start) & (ids < _KEY.stop)
    ids[keyed] = 2 * _NORMALISED_FROM + (ids[keyed] - _KEY.start) // 15  # major, minor
    return hashlib.blake2b(ids.tobytes(), digest_size=16).hexdigest()


def split_of(fingerprint_hex: str, config: BuildConfig) -> str:
    """train / valid / test from the piece's content hash (stable as the corpus grows)."""
    digest = hashlib.blake2b(f"{config.seed}:{fingerprint_hex}".encode(), digest_size=8)
    u = int.from_bytes(digest.digest(), "big") / 2**64
    if u < config.valid_fraction:
        return "valid"
    if u < config.valid_fraction + config.test_fraction:
        return "test"
    return "train"


def transpose_range(tracks: Iterable[tuple[int, bool, int, int]]) -> tuple[int, int]:
    """Semitone shifts that keep every melodic track inside its instrument's range."""
    down, up = -127, 127
    melodic = False
    for program, is_drum, low, high in tracks:
        if is_drum:
            continue
        melodic = True
        lo, hi = transpose_limits(program, low, high)
        down, up = max(down, lo), min(up, hi)
    return (down, up) if melodic else (0, 0)


def _unreadable(path: str) -> str:
    try:
        Path(path).read_bytes()
    except OSError as err:
        return f"cannot read: {err.strerror or err}"
    return "cannot read the file"


def assemble(
    items: list[Item],
    keys: list[str | None],
    results: Mapping[str, Encoding],
    config: BuildConfig,
) -> tuple[list[Piece], list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """Pieces in source order, duplicates and failures set aside, splits assigned; with
    each piece's cache key (its ids are fetched again when the shards are written, so
    that no more than one piece's ids are held at a time)."""
    pieces: list[Piece] = []
    piece_keys: list[str] = []
    failures: list[tuple[str, str]] = []
    duplicates: list[tuple[str, str]] = []
    first_by_print: dict[str, str] = {}
    for item, key in zip(items, keys, strict=True):
        label = f"{item.source}:{item.name}"
        enc = results.get(key) if key else Encoding(error=_unreadable(item.path))
        if enc is None or enc.error:
            failures.append((label, enc.error if enc else "not encoded"))
            continue
        ids = piece_ids(enc, item.style)
        print_hex = fingerprint(ids)
        if config.dedup and print_hex in first_by_print:
            duplicates.append((label, first_by_print[print_hex]))
            continue
        first_by_print[print_hex] = label
        split = split_of(print_hex, config)
        pieces.append(Piece(item.name, item.source, item.style, split, len(ids), enc.notes,
                            transpose_range(enc.tracks), print_hex))  # fmt: skip
        piece_keys.append(key)
    _ensure_held_out(pieces, config)
    return pieces, piece_keys, failures, duplicates


def piece_ids(enc: Encoding, style: str) -> np.ndarray:
    """The token ids of an encoding, with the piece's style word."""
    ids = np.frombuffer(enc.ids, dtype="<u2").astype(TOKEN_DTYPE)  # a copy
    ids[_STYLE_POSITION] = VOCAB.id_of("style", style)
    return ids


def _ensure_held_out(pieces: list[Piece], config: BuildConfig) -> None:
    """A small source may hash none of its pieces into a held-out split: then, source by
    source, its training piece whose hash came closest goes to test (when the source has 3
    training pieces or more), then the next one to validation (when 3 or more are still
    left). So every source of 3 pieces has a test piece, of 4 a validation piece too, and
    each is measured on pieces it never trained on; a larger source keeps the hash's
    split, which does not move as the corpus grows."""
    for source in dict.fromkeys(p.source for p in pieces):
        for split, fraction in (("test", config.test_fraction), ("valid", config.valid_fraction)):
            own = [p for p in pieces if p.source == source]
            train = [p for p in own if p.split == "train"]
            if fraction > 0 and len(train) >= 3 and not any(p.split == split for p in own):
                chosen = min(train, key=lambda p: _hash_unit(p.fingerprint, config.seed))
                for piece in pieces:  # its copies too, when duplicates are kept
                    if piece.split == "train" and piece.fingerprint == chosen.fingerprint:
                        piece.split = split


def _hash_unit(print_hex: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{print_hex}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
