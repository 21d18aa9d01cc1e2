"""Training-time augmentation of one piece's token ids: dynamics, instruments, tempo.

    aug = Augmentation(velocity_level=3, velocity_ramp=4, velocity_jitter=1,
                       velocity_jitter_share=0.25, revoice=0.3, tempo_percent=3.0)
    ids = augment_ids(piece_ids, aug, rng)   # still valid token text

The piece starts with its header (`piece_from_bar` makes one for a window that starts
inside a piece) and holds whole bars; it may stop before `end` (the sampler cuts long
pieces a little past the window first, so the work is bounded by the window's size).
Every change keeps the text canonical, so the result is valid by the grammar:

- tempo: every tempo word times one factor (± `tempo_percent`), to the nearest tempo
  token; a change that now restates the tempo in force is dropped, as the grammar wants.
- instruments: a melodic piano or voice track (music21's parts) gets, with probability
  `revoice`, another General MIDI program whose playable range holds every pitch the
  track plays here. Only the header's `inst:` word changes; drums never change.
- velocity level and crescendo: one offset in bins for the piece (± `velocity_level`)
  plus a ramp over its bars (from 0 to ± `velocity_ramp` bins at its last bar). The
  offset is constant within a bar, where velocity words live (a bar forgets them), and a
  shift keeps their order and their differences, so the canonical (duration, velocity)
  order stays; a bar's offset is clamped so that no velocity leaves the 32 bins.
- velocity jitter: in a share `velocity_jitter_share` of the pieces, each note's bin
  moves by up to ± `velocity_jitter`. That is not a
  monotone map (groups of a chord split, others merge), so each onset is written again in
  the canonical form, as the encoder writes it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from music_lm.midi.instruments import pitch_range
from music_lm.tokens.vocab import VOCAB, nearest_tempo

_PITCH = VOCAB.ranges["pitch"]
_TEMPO = VOCAB.ranges["tempo"]
_INST = VOCAB.ranges["inst"]
_TRACK = VOCAB.ranges["track"]
_VEL = VOCAB.ranges["vel"]
_POS = VOCAB.ranges["pos"]
_BAR = VOCAB.ids["bar"]
_END = VOCAB.ids["end"]
_DRUMS = VOCAB.id_of("inst", -1)
_VEL_BINS = len(_VEL)

# music21's corpus is piano (13,487 tracks) and voices (voice oohs 5,504, choir 138).
REVOICE_FROM = frozenset({0, 1, 52, 53})
# Programs a part may be re-voiced onto: real instruments with a known playable range
# (`music_lm.midi.instruments`). A program is drawn among those whose range holds the part.
REVOICE_TO = (
    0, 4, 6, 11, 12,  # piano, electric piano, harpsichord, vibraphone, marimba
    16, 19, 21,  # drawbar and church organ, accordion
    24, 25, 26, 27, 32, 33,  # guitars, basses
    40, 41, 42, 43, 46, 48, 49,  # violin, viola, cello, contrabass, harp, string ensembles
    52, 53,  # choir, voice
    56, 57, 58, 60, 61,  # trumpet, trombone, tuba, horn, brass section
    64, 65, 66, 67,  # saxophones
    68, 69, 70, 71, 73, 74,  # oboe, cor anglais, bassoon, clarinet, flute, recorder
)  # fmt: skip
_TEMPO_ID = {float(VOCAB.values[i]): i for i in _TEMPO}

# What `jitter_velocities` does with each token id (0: writes it as it is).
_K_NOTE, _K_TRACK, _K_DUR_LONG, _K_DUR, _K_VEL = 1, 2, 3, 4, 5
_KIND = [0] * len(VOCAB)
for _kind, _families in (
    (_K_NOTE, ("pitch", "drum")),
    (_K_TRACK, ("track",)),
    (_K_DUR_LONG, ("dur_long",)),
    (_K_DUR, ("dur",)),
    (_K_VEL, ("vel",)),
):
    for _family in _families:
        for _id in VOCAB.ranges[_family]:
            _KIND[_id] = _kind
_STEPS = [v if isinstance(v, int) else 0 for v in VOCAB.values]  # grid steps of d: words


@dataclass(frozen=True)
class Augmentation:
    """How strongly each augmentation acts; 0 turns it off."""

    velocity_level: int = 0  # ± bins (of 4 velocity steps), one offset per piece
    velocity_ramp: int = 0  # ± bins reached at the piece's last bar: crescendo or diminuendo
    velocity_jitter: int = 0  # ± bins per note
    revoice: float = 0.0  # probability that a piano or voice track gets another program
    tempo_percent: float = 0.0  # ± percent, one factor per piece
    # The share of pieces jittered. Jitter splits a bar's shared velocity word into one per
    # note (music21's pieces: 0.28 velocity words per note become 0.76), so a model that
    # always sees it expects a velocity word after nearly every note and pays for it on
    # real files; jittering some pieces keeps the habit without teaching that expectation.
    velocity_jitter_share: float = 1.0

    def __post_init__(self) -> None:
        for name in ("velocity_level", "velocity_ramp", "velocity_jitter"):
            value = getattr(self, name)
            if not 0 <= value < _VEL_BINS:
                raise ValueError(f"{name} must be 0..{_VEL_BINS - 1} bins, got {value}")
        if not 0 <= self.velocity_jitter_share <= 1:
            share = self.velocity_jitter_share
            raise ValueError(f"velocity_jitter_share must be a probability 0..1, got {share}")
        if not 0 <= self.revoice <= 1:
            raise ValueError(f"revoice must be a probability 0..1, got {self.revoice}")
        if not 0 <= self.tempo_percent <= 50:
            raise ValueError(f"tempo_percent must be 0..50, got {self.tempo_percent}")

    @property
    def active(self) -> bool:
        return bool(
            self.velocity_level or self.velocity_ramp or self.velocity_jitter
            or self.revoice or self.tempo_percent
        )  # fmt: skip


def augment_ids(ids: np.ndarray, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """A copy of a piece's token ids (header first, whole bars) with `aug` applied, drawn
    from `rng` (the same draws give the same piece)."""
    out = np.array(ids, dtype=np.int64)
    if aug.tempo_percent:
        out = scale_tempo(out, 1 + rng.uniform(-aug.tempo_percent, aug.tempo_percent) / 100)
    if aug.revoice:
        out = revoice(out, aug.revoice, rng)
    if aug.velocity_level or aug.velocity_ramp:
        level = int(rng.integers(-aug.velocity_level, aug.velocity_level + 1))
        ramp = float(rng.uniform(-aug.velocity_ramp, aug.velocity_ramp))
        out = shift_velocities(out, level, ramp)
    # Drawn only when some pieces are spared, so that a share of 1 draws as before.
    if aug.velocity_jitter and (
        aug.velocity_jitter_share >= 1 or rng.random() < aug.velocity_jitter_share
    ):
        out = jitter_velocities(out, aug.velocity_jitter, rng)
    return out


# ---- tempo ----


def scale_tempo(ids: np.ndarray, factor: float) -> np.ndarray:
    """Every tempo word times `factor`, to the nearest tempo token (20..400 BPM)."""
    out = np.array(ids, dtype=np.int64)
    at = np.flatnonzero((out >= _TEMPO.start) & (out < _TEMPO.stop))
    for i in at:
        out[i] = _TEMPO_ID[nearest_tempo(float(VOCAB.values[out[i]]) * factor)]
    return drop_repeated(out, _TEMPO)


def drop_repeated(ids: np.ndarray, family: range) -> np.ndarray:
    """Drop a tempo or key change that now states the value already in force (the grammar
    writes only changes), and its onset when nothing else happens there."""
    at = np.flatnonzero((ids >= family.start) & (ids < family.stop))
    drop: list[int] = []
    for previous, i in itertools.pairwise(at):
        if ids[i] != ids[previous]:
            continue
        drop.append(int(i))
        after = int(ids[i + 1]) if i + 1 < len(ids) else _END
        onset_empty = after in (_BAR, _END) or after in _POS
        if ids[i - 1] in _POS and onset_empty:
            drop.append(int(i) - 1)
    return np.delete(ids, drop) if drop else ids


# ---- instruments ----


def track_pitch_ranges(ids: np.ndarray) -> dict[int, tuple[int, int]]:
    """(lowest, highest) MIDI pitch each track (0-based) plays in `ids`. A bar's first
    part always names its track and later parts without a track word continue it, so a
    pitch belongs to the last track word before it."""
    tracks = np.flatnonzero((ids >= _TRACK.start) & (ids < _TRACK.stop))
    pitches = np.flatnonzero((ids >= _PITCH.start) & (ids < _PITCH.stop))
    if not len(tracks) or not len(pitches):
        return {}
    owner = np.searchsorted(tracks, pitches) - 1
    keep = owner >= 0
    track_of = ids[tracks[owner[keep]]] - _TRACK.start
    values = ids[pitches[keep]] - _PITCH.start
    ranges = {}
    for track in np.unique(track_of):
        mine = values[track_of == track]
        ranges[int(track)] = (int(mine.min()), int(mine.max()))
    return ranges


def revoice(ids: np.ndarray, probability: float, rng: np.random.Generator) -> np.ndarray:
    """Each piano or voice track, with `probability`, onto another program of
    REVOICE_TO whose playable range holds the track's pitches here."""
    out = np.array(ids, dtype=np.int64)
    first_bar = np.flatnonzero(out == _BAR)
    header_end = int(first_bar[0]) if len(first_bar) else len(out)
    inst_at = np.flatnonzero((out[:header_end] >= _INST.start) & (out[:header_end] < _INST.stop))
    ranges = track_pitch_ranges(out)
    for track, i in enumerate(inst_at):
        program = int(VOCAB.values[out[i]])
        if out[i] == _DRUMS or program not in REVOICE_FROM or track not in ranges:
            continue
        if rng.random() >= probability:
            continue
        low, high = ranges[track]
        choices = [
            p for p in REVOICE_TO
            if p != program and pitch_range(p)[0] <= low and high <= pitch_range(p)[1]
        ]  # fmt: skip
        if choices:
            out[i] = VOCAB.id_of("inst", choices[int(rng.integers(len(choices)))])
    return out


# ---- velocity ----


def shift_velocities(ids: np.ndarray, level: int, ramp: float) -> np.ndarray:
    """Every velocity word of bar k (of n) moved by round(level + ramp * k / (n - 1))
    bins, the bar's offset clamped so that its velocities stay inside the bins."""
    out = np.array(ids, dtype=np.int64)
    vel_at = np.flatnonzero((out >= _VEL.start) & (out < _VEL.stop))
    if not len(vel_at):
        return out
    bar_of_token = np.cumsum(out == _BAR)
    bars = int(bar_of_token[-1])
    bar = bar_of_token[vel_at]
    bins = out[vel_at] - _VEL.start
    # bar k (counted from 1; 0 is the header) gets level + ramp * (k - 1) / (bars - 1)
    offsets = np.rint(level + ramp * (np.arange(bars + 1) - 1) / max(bars - 1, 1))
    low = np.full(bars + 1, _VEL_BINS, dtype=np.int64)
    high = np.full(bars + 1, -1, dtype=np.int64)
    np.minimum.at(low, bar, bins)
    np.maximum.at(high, bar, bins)
    offsets = np.clip(offsets, -low, _VEL_BINS - 1 - high)
    out[vel_at] = _VEL.start + bins + offsets[bar].astype(np.int64)
    return out


def jitter_velocities(ids: np.ndarray, bins: int, rng: np.random.Generator) -> np.ndarray:
    """Each note's velocity moved by up to ± `bins` bins (clamped to the bins).

    Not a monotone map: a chord's notes part ways, groups split and merge. So every onset
    is written again as the encoder writes it (`music_lm.tokens.codec.encode`): its notes
    sorted by (track, duration, velocity, pitch), a track word when the track changes,
    duration and velocity words when they differ from the track's in this bar. That is
    the canonical form, without decoding the piece (decode and encode cost several times
    more: bench/RESULTS.md, Window augmentation)."""
    source = ids.tolist()
    steps = iter(rng.integers(-bins, bins + 1, size=len(source)).tolist())  # one per token: enough
    out: list[int] = []
    onset: list[tuple[int, int, int, int, tuple[int, ...]]] = []
    track, durations, velocities = 0, {}, {}  # as the source states them
    long_words: list[int] = []
    long_steps = 0
    written: list = [None, {}, {}]  # the track, durations and velocities written so far

    def flush() -> None:
        for part, steps_, bin_, note, words in sorted(onset):
            if part != written[0]:
                out.append(_TRACK.start + part)
                written[0] = part
            if written[1].get(part) != steps_:
                out.extend(words)
                written[1][part] = steps_
            if written[2].get(part) != bin_:
                out.append(_VEL.start + bin_)
                written[2][part] = bin_
            out.append(note)
        onset.clear()

    for token in source:
        kind = _KIND[token]
        if kind == _K_NOTE:
            bin_ = min(max(velocities[track] + next(steps), 0), _VEL_BINS - 1)
            dur_steps, dur_words = durations[track]
            onset.append((track, dur_steps, bin_, token, dur_words))
        elif kind == _K_TRACK:
            track = token - _TRACK.start
        elif kind == _K_DUR_LONG:
            long_words.append(token)
            long_steps += _STEPS[token]
        elif kind == _K_DUR:
            durations[track] = (long_steps + _STEPS[token], (*long_words, token))
            long_words, long_steps = [], 0
        elif kind == _K_VEL:
            velocities[track] = token - _VEL.start
        else:  # a bar, position, tempo, key, meter, header word or `end`: as it is
            if onset:
                flush()
            if token == _BAR:  # a bar forgets what the one before stated
                durations, velocities = {}, {}
                written = [None, {}, {}]
            out.append(token)
    if onset:
        flush()
    return np.array(out, dtype=np.int64)
