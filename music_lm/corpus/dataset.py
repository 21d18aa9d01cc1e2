"""Read a built corpus: pieces, training windows, transposition, mixtures. numpy only.

    corpus = Corpus("data/corpus")
    sampler = WindowSampler([corpus], "train", block_size=1024, transpose=5,
                            weights={"folk-essen": 0.7, "bach": 0.3}, seed=0)
    batch = sampler.batch(8)            # int64 array (8, 1025): inputs and shifted targets

Windows start at the beginning of a piece or at a bar line. One that starts inside a
piece is prefixed with a header stating what is in force at that bar (the style, the
tempo, meter and key of that moment, the instruments that still play), so every window
is the start of a valid piece (`piece_from_bar`). A window that reaches the end of its
piece goes on with the start of another piece drawn from the mixture.

Transposition augmentation happens here, at training time, never in the shards: each
piece of a window is shifted by its own random number of semitones, chosen within
±`transpose` and within the range the corpus recorded for that piece (every melodic
track stays inside its instrument's range, see `music_lm.midi.instruments`). Pitch words
and key signatures move; drum hits are a different token family and never move.

The other augmentations (`augment=Augmentation(...)`: dynamics, instruments, tempo; see
`music_lm.corpus.augment`) act on each piece of a window after its transposition, drawn
from the same generator: the same seed gives the same windows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from music_lm.corpus.augment import Augmentation, augment_ids, drop_repeated
from music_lm.corpus.sources import CorpusError
from music_lm.tokens.fim import to_fim
from music_lm.tokens.vocab import VOCAB

CORPUS_FORMAT = "music_lm-corpus"
SUPPORTED_VERSIONS = (1,)
SPLITS = ("train", "valid", "test")

_PITCH = VOCAB.ranges["pitch"]
_KEY = VOCAB.ranges["key"]
_TS = VOCAB.ranges["ts"]
_TEMPO = VOCAB.ranges["tempo"]
_INST = VOCAB.ranges["inst"]
_TRACK = VOCAB.ranges["track"]
_POS = VOCAB.ranges["pos"]
_BAR = VOCAB.ids["bar"]
_END = VOCAB.ids["end"]
_KEYS_PER_MODE = 15  # key:Cb..key:C# (sharps -7..7), major then minor
# An augmented piece is cut at the first bar line this many tokens past what the window
# needs (augmenting the rest would be wasted): dropped tempo or key repeats and merged
# velocity groups rarely take more back; when they do, the whole piece is augmented.
_AUGMENT_MARGIN = 64


@dataclass
class Piece:
    """One piece of a corpus: a line of its index.jsonl."""

    name: str
    source: str
    style: str
    split: str
    tokens: int
    notes: int
    transpose: tuple[int, int]  # allowed semitone shifts (down, up) inside instrument ranges
    fingerprint: str  # content hash, blind to transposition and style (dedup and split)
    shard: str = ""  # where its token ids are
    offset: int = 0


class Corpus:
    """A built corpus folder: its manifest, its pieces and their token ids (memory-mapped)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / "manifest.json"
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CorpusError(f"{self.folder}: not a corpus (no manifest.json)") from None
        except (OSError, ValueError) as err:
            raise CorpusError(f"{manifest_path}: unreadable manifest ({err})") from None
        if self.manifest.get("format") != CORPUS_FORMAT:
            raise CorpusError(f"{manifest_path}: not a music_lm corpus manifest")
        if self.manifest.get("version") not in SUPPORTED_VERSIONS:
            raise CorpusError(
                f"{manifest_path}: corpus format version {self.manifest.get('version')} "
                f"(this music_lm reads {SUPPORTED_VERSIONS})"
            )
        # A corpus built before tokens were appended to the vocabulary holds the same ids.
        size = self.manifest.get("vocab_size")
        older = isinstance(size, int) and 0 < size <= len(VOCAB)
        if self.manifest.get("vocab_sha256") != (VOCAB.sha256_of_first(size) if older else None):
            raise CorpusError(
                f"{manifest_path}: built with another vocabulary "
                f"({self.manifest.get('vocab_size')} tokens, hash "
                f"{str(self.manifest.get('vocab_sha256'))[:12]}; this music_lm has "
                f"{len(VOCAB)}, {VOCAB.sha256[:12]}): rebuild the corpus"
            )
        self.pieces: list[Piece] = []
        index_path = self.folder / "index.jsonl"
        try:
            lines = index_path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise CorpusError(f"{index_path}: cannot read ({err.strerror or err})") from None
        for number, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
                row["transpose"] = tuple(row["transpose"])
                self.pieces.append(Piece(**row))
            except (ValueError, TypeError, KeyError) as err:
                message = f"{index_path}: line {number}: not an index entry ({err})"
                raise CorpusError(message) from None
        self._shards: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.pieces)

    def __repr__(self) -> str:
        return f"Corpus({str(self.folder)!r}, {len(self)} pieces)"

    def shard(self, name: str) -> np.ndarray:
        if name not in self._shards:
            path = self.folder / name
            self._shards[name] = np.memmap(path, dtype=np.uint16, mode="r")
        return self._shards[name]

    def ids(self, index: int) -> np.ndarray:
        """Token ids of piece `index` (a read-only view into its shard)."""
        piece = self.pieces[index]
        return self.shard(piece.shard)[piece.offset : piece.offset + piece.tokens]

    def text(self, index: int) -> str:
        """Token text of piece `index`."""
        return " ".join(VOCAB.tokens[i] for i in self.ids(index))

    def split(self, name: str) -> list[int]:
        """Indices of the pieces of a split."""
        if name not in SPLITS:
            raise CorpusError(f"unknown split {name!r} (splits: {', '.join(SPLITS)})")
        return [i for i, p in enumerate(self.pieces) if p.split == name]

    def split_tokens(self, name: str) -> Iterator[np.ndarray]:
        """The token ids of a split, piece after piece, in index order."""
        for index in self.split(name):
            yield self.ids(index)


# ---- transposition ----


def _key_shift_table() -> np.ndarray:
    """table[k % 12, key index] = key index after moving the tonic k semitones. Moving
    the tonic a fifth up adds a sharp, so k semitones add 7k sharps (mod 12); the result
    is spelt with at most 6 flats or 5 sharps (Gb rather than F#, but B rather than Cb)."""
    table = np.zeros((12, len(_KEY)), dtype=np.int64)
    for k in range(12):
        for index in range(len(_KEY)):
            mode, sharps = divmod(index, _KEYS_PER_MODE)
            sharps -= 7
            new = sharps if k == 0 else (sharps + 7 * k + 6) % 12 - 6
            table[k, index] = mode * _KEYS_PER_MODE + new + 7
    return table


_KEY_SHIFT = _key_shift_table()


def transpose_ids(ids: np.ndarray, semitones: int) -> np.ndarray:
    """A copy of `ids` with every pitch moved `semitones` and key signatures moved with
    them. Drum hits are another token family and stay. The caller keeps pitches in
    0..127 (the corpus records each piece's allowed range); a pitch pushed outside is a
    ValueError, never a wrong token."""
    out = np.array(ids, dtype=np.int64)
    if semitones == 0:
        return out
    pitched = (out >= _PITCH.start) & (out < _PITCH.stop)
    out[pitched] += semitones
    if pitched.any() and not (
        out[pitched].min() >= _PITCH.start and out[pitched].max() < _PITCH.stop
    ):
        raise ValueError(f"transposing by {semitones} semitones leaves MIDI's 0..127")
    keyed = (out >= _KEY.start) & (out < _KEY.stop)
    out[keyed] = _KEY.start + _KEY_SHIFT[semitones % 12, out[keyed] - _KEY.start]
    # Enharmonic key changes (Gb to F#) become the same key once transposed, and the
    # grammar writes no key change that changes nothing.
    return drop_repeated(out, _KEY)


def piece_from_bar(ids: np.ndarray, start: int, keep_tracks: bool = False) -> np.ndarray:
    """The piece from its bar at token `start` on, as a piece of its own: a header with
    the style, the tempo, meter and key in force at that bar (a meter, tempo or key change
    at the bar's start moves into it), and the instruments that play from there on (the
    tracks renumbered). Bars carry no notes' state over, so the rest is valid as it is.

    `keep_tracks` keeps every instrument and the track numbers as they are (the window a
    generator feeds its model, whose new tokens must name the piece's own tracks)."""
    ids = np.asarray(ids, dtype=np.int64)
    if start == 0:
        return ids.copy()
    if ids[start] != _BAR:
        raise ValueError(f"token {start} is {VOCAB.tokens[ids[start]]!r}, not a bar")
    first_bar = int(np.argmax(ids == _BAR))
    header, before, body = ids[:first_bar], ids[:start], ids[start:].copy()

    def in_force(family: range) -> list[int]:
        hits = np.flatnonzero((before >= family.start) & (before < family.stop))
        return [int(before[hits[-1]])] if len(hits) else []

    tempo, ts, key = in_force(_TEMPO), in_force(_TS), in_force(_KEY)
    drop: list[int] = []
    at = 1
    if at < len(body) and body[at] in _TS:  # a meter change at this bar
        ts, at = [int(body[at])], at + 1
        drop.append(at - 1)
    if at < len(body) and body[at] == _POS.start:  # @0: a tempo or key change here?
        onset, at = at, at + 1
        if at < len(body) and body[at] in _TEMPO:
            tempo, at = [int(body[at])], at + 1
            drop.append(at - 1)
        if at < len(body) and body[at] in _KEY:
            key, at = [int(body[at])], at + 1
            drop.append(at - 1)
        if drop and drop[-1] == at - 1 and (at >= len(body) or body[at] in (_BAR, _END)
                                            or body[at] in _POS):  # fmt: skip
            drop.append(onset)  # the onset held nothing else
    body = np.delete(body, drop)
    instruments = header[(header >= _INST.start) & (header < _INST.stop)]
    head = [int(header[0]), int(header[1]), *tempo, *ts, *key]
    if keep_tracks:
        return np.concatenate([np.array(head, dtype=np.int64), instruments, body])
    # tracks that still play, renumbered in order
    tracks = body[(body >= _TRACK.start) & (body < _TRACK.stop)]
    playing = sorted(set((tracks - _TRACK.start).tolist()))
    renumber = np.arange(len(_TRACK)) + _TRACK.start
    for new, old in enumerate(playing):
        renumber[old] = _TRACK.start + new
    is_track = (body >= _TRACK.start) & (body < _TRACK.stop)
    body[is_track] = renumber[body[is_track] - _TRACK.start]
    return np.concatenate([np.array(head, dtype=np.int64), instruments[playing], body])


# ---- training windows ----


class WindowSampler:
    """Random training windows from one or more corpora, mixed by weight, transposed.

    `weights` maps a source label (`music21`, a folder's tag) or a style (`bach`,
    `folk-essen`) to its share of the windows: {"folk-essen": 0.7, "bach": 0.3} draws
    70 % of windows from Essen folk songs and 30 % from Bach, whatever their sizes.
    A name that is both a source and a style means the source; groups may not overlap.
    Without weights, pieces are drawn in proportion to their length (about every token
    of the split equally likely: the corpora's natural mixture). Within a group, too, a
    piece is drawn in proportion to its length.
    """

    def __init__(
        self,
        corpora: Sequence[Corpus] | Corpus,
        split: str = "train",
        block_size: int = 1024,
        transpose: int = 0,
        weights: Mapping[str, float] | None = None,
        seed: int = 0,
        header: bool = True,
        augment: Augmentation | None = None,
        fim_share: float = 0.0,
    ) -> None:
        self.corpora = [corpora] if isinstance(corpora, Corpus) else list(corpora)
        if not 0 <= fim_share <= 1:
            raise ValueError(f"fim_share must be a probability 0..1, got {fim_share}")
        if fim_share and not header:
            raise ValueError("fill-in-the-middle windows need the windows' headers (header=True)")
        self.fim_share = fim_share
        if block_size < 2:
            raise ValueError(f"block_size must be at least 2, got {block_size}")
        if not 0 <= transpose <= 12:
            raise ValueError(f"transpose must be 0..12 semitones, got {transpose}")
        if augment is not None and augment.active and not header:
            raise ValueError("augmentation needs the windows' headers (header=True)")
        self.block_size = block_size
        self.transpose = transpose
        self.header = header
        self.augment = augment if augment is not None and augment.active else None
        self.rng = np.random.default_rng(seed)
        self.members = [(c, i) for c in self.corpora for i in c.split(split)]
        if not self.members:
            names = ", ".join(str(c.folder) for c in self.corpora)
            raise CorpusError(f"{names}: the {split!r} split has no pieces")
        lengths = np.array([c.pieces[i].tokens for c, i in self.members], dtype=np.float64)
        self.groups, self.group_weights = self._groups(weights, lengths)
        self.group_probs = [lengths[g] / lengths[g].sum() for g in self.groups]

    def _groups(self, weights, lengths):
        if not weights:
            return [np.arange(len(self.members))], np.array([1.0])
        sources = np.array([c.pieces[i].source for c, i in self.members])
        styles = np.array([c.pieces[i].style for c, i in self.members])
        groups, shares, names = [], [], []
        for name, share in weights.items():
            if share < 0:
                raise ValueError(f"mixing weight of {name!r} must be >= 0, got {share}")
            members = np.flatnonzero(sources == name)
            if not len(members):
                members = np.flatnonzero(styles == name)
            if not len(members):
                choices = sorted(set(sources) | set(styles))
                raise CorpusError(
                    f"mixing weight {name!r}: no source or style of that name in this split "
                    f"(there are: {', '.join(choices)})"
                )
            for other_name, other in zip(names, groups, strict=True):
                if share > 0 and np.intersect1d(members, other).size:
                    raise CorpusError(
                        f"mixing weights {other_name!r} and {name!r} share pieces: name "
                        f"groups that do not overlap (sources, or styles)"
                    )
            if share > 0:
                groups.append(members)
                shares.append(share)
                names.append(name)
        if not groups:
            raise ValueError("the mixing weights are all zero")
        shares_array = np.array(shares, dtype=np.float64)
        return groups, shares_array / shares_array.sum()

    def mixture(self) -> dict[str, float]:
        """Expected share of windows per source:style, for logs and tests."""
        share: dict[str, float] = {}
        for members, weight, probs in zip(
            self.groups, self.group_weights, self.group_probs, strict=True
        ):
            for member, p in zip(members, probs, strict=True):
                corpus, index = self.members[member]
                piece = corpus.pieces[index]
                key = f"{piece.source}:{piece.style}"
                share[key] = share.get(key, 0.0) + float(weight * p)
        return share

    def _draw_piece(self) -> tuple[Corpus, int]:
        g = self.rng.choice(len(self.groups), p=self.group_weights)
        member = self.groups[g][self.rng.choice(len(self.groups[g]), p=self.group_probs[g])]
        return self.members[member]

    def _shift(self, corpus: Corpus, index: int) -> int:
        if not self.transpose:
            return 0
        down, up = corpus.pieces[index].transpose
        low, high = max(down, -self.transpose), min(up, self.transpose)
        return int(self.rng.integers(low, high + 1)) if low <= high else 0

    def window(self) -> np.ndarray:
        """One window of block_size + 1 token ids (int64)."""
        need = self.block_size + 1
        parts: list[np.ndarray] = []
        corpus, index = self._draw_piece()
        ids = corpus.ids(index)
        start = 0
        if len(ids) > need:
            bars = np.flatnonzero(ids[: len(ids) - need // 2] == _BAR)
            start = int(self.rng.choice(bars)) if len(bars) else 0
        while True:
            left = need - sum(map(len, parts))
            parts.append(self._piece(corpus, index, ids, start, left)[:left])
            if sum(map(len, parts)) >= need:
                return np.concatenate(parts)
            corpus, index = self._draw_piece()
            ids, start = corpus.ids(index), 0

    def _piece(
        self, corpus: Corpus, index: int, ids: np.ndarray, start: int, left: int
    ) -> np.ndarray:
        """The piece from token `start` on, transposed and augmented; at least `left`
        tokens unless the piece ends sooner. With `fim_share`, that share of them comes in
        the fill-in-the-middle form (`fim_window`), cut to fit `left`."""
        piece = self._plain_piece(corpus, index, ids, start, left)
        # Drawn only when asked for, so that runs without it draw as before.
        if self.fim_share and self.rng.random() < self.fim_share:
            return fim_window(piece, left, self.rng)
        return piece

    def _plain_piece(
        self, corpus: Corpus, index: int, ids: np.ndarray, start: int, left: int
    ) -> np.ndarray:
        if self.augment is None:
            piece = piece_from_bar(ids, start) if self.header else ids[start:]
            return transpose_ids(piece, self._shift(corpus, index))
        shift = self._shift(corpus, index)
        bars = np.flatnonzero(ids[start + left + _AUGMENT_MARGIN :] == _BAR)
        stop = start + left + _AUGMENT_MARGIN + int(bars[0]) if len(bars) else len(ids)
        piece = augment_ids(transpose_ids(piece_from_bar(ids[:stop], start), shift),
                            self.augment, self.rng)  # fmt: skip
        if stop < len(ids) and len(piece) < left:
            piece = augment_ids(transpose_ids(piece_from_bar(ids, start), shift),
                                self.augment, self.rng)  # fmt: skip
        return piece

    def batch(self, batch_size: int) -> np.ndarray:
        """(batch_size, block_size + 1) int64 windows."""
        return np.stack([self.window() for _ in range(batch_size)])


FIM_MAX_BARS = 8  # the longest middle of a training window, in bars
_FIM_EXTRA = 6  # words the form adds: hole, tempo, meter, key, fill, end


def fim_window(piece: np.ndarray, left: int, rng: np.random.Generator) -> np.ndarray:
    """A piece (a header and whole bars) in the fill-in-the-middle form (tokens/fim.py):
    first cut at a bar line to fit `left` tokens, then a middle of 1..FIM_MAX_BARS bars
    drawn anywhere in it (the prefix may be empty, and so may the suffix of a piece that
    was not cut). The piece as it is when no middle fits: a first bar longer than the
    window, or a track that plays only after the cut (the form's `end` needs every
    declared track to play).

    A cut piece keeps at least one bar after its middle: a middle that ran to the cut with
    an empty suffix would be closed by `end`, teaching that pieces end where windows do."""
    room = left - _FIM_EXTRA
    whole = piece
    bars = np.flatnonzero(piece == _BAR)
    if not len(bars) or bars[0] >= room:
        return whole
    cut = len(piece) - (piece[-1] == _END) > room
    if cut:  # at the last bar line that fits
        fits = bars[bars <= room]
        if len(fits) < 3:
            return whole  # not two whole bars fit: a middle and a suffix bar
        piece, bars = piece[: fits[-1]], fits[:-1]
    header = piece[: bars[0]]
    declared = int(((header >= _INST.start) & (header < _INST.stop)).sum())
    played = np.unique(piece[(piece >= _TRACK.start) & (piece < _TRACK.stop)])
    if len(played) != declared:
        return whole
    starts = len(bars) - 1 if cut else len(bars)  # bars a middle may start at or cover
    first = int(rng.integers(starts))
    count = int(rng.integers(1, min(FIM_MAX_BARS, starts - first) + 1))
    body_end = len(piece) - 1 if piece[-1] == _END else len(piece)
    stop = int(bars[first + count]) if first + count < len(bars) else body_end
    return np.asarray(to_fim(piece.tolist(), int(bars[first]), stop), dtype=np.int64)


def sequential_windows(corpus: Corpus, split: str, block_size: int) -> Iterator[np.ndarray]:
    """The whole split as consecutive windows of block_size + 1 tokens overlapping by one
    (inputs and targets), in index order, untransposed: for evaluation."""
    tokens = [corpus.ids(i) for i in corpus.split(split)]
    if not tokens:
        return
    stream = np.concatenate(tokens)  # uint16: a quarter of the memory of int64
    for start in range(0, len(stream) - 1, block_size):
        window = stream[start : start + block_size + 1]
        if len(window) > 1:
            yield window.astype(np.int64)
