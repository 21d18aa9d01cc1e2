"""The seed a continuation starts from: token text, a MIDI or text file, or a header made
from nothing, cut to its first bars, given a style and instruments, and the grammar and
constraint state at its end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from music_lm.generation.constraints import (
    SEED_KEY,
    ConstraintError,
    Constraints,
    key_signature_tonic,
)
from music_lm.generation.settings import GenerationError
from music_lm.generation.state import ContinuationState
from music_lm.limits import check_size
from music_lm.tokens.encoded import Encoded, encode_midi
from music_lm.tokens.grammar import GrammarError, GrammarState
from music_lm.tokens.rules import BAR, END
from music_lm.tokens.validate import located, words_to_ids
from music_lm.tokens.vocab import VOCAB, nearest_tempo

R = VOCAB.ranges
# A MIDI seed is read with the sustain pedal applied unless asked otherwise: a continuation
# is written without a pedal (the token format has none), so a pedalled piano read note-off
# by note-off would lose, in the output, the notes the pedal held, and be continued so.
SUSTAIN_SEEDS = True
_FAM = VOCAB.family_of
_VAL = VOCAB.values


@dataclass(frozen=True)
class Header:
    """The start of a piece made from nothing: what a seed's first line would say."""

    style: str = "none"
    tempo_bpm: float = 120.0
    time_signature: tuple[int, int] = (4, 4)
    key: tuple[int, str] | None = None  # (sharps, mode) of the key signature, or none
    programs: tuple[int, ...] = (0,)  # GM programs, -1 for drums

    def __post_init__(self) -> None:
        try:
            self.words()
        except KeyError:  # a style or meter the vocabulary has no token for
            raise GenerationError(self._problem()) from None

    def _problem(self) -> str:
        for family, value, option in (("style", self.style, "--style"),
                                      ("ts", tuple(self.time_signature), "--ts")):  # fmt: skip
            try:
                VOCAB.word_of(family, value)
            except KeyError:
                shown = value if family == "style" else "/".join(map(str, value))
                return f"{option} {shown} is not in the vocabulary"
        return f"this header cannot be written: {self}"

    def words(self) -> list[str]:
        words = ["piece", VOCAB.word_of("style", self.style)]
        words.append(VOCAB.word_of("tempo", nearest_tempo(self.tempo_bpm)))
        words.append(VOCAB.word_of("ts", tuple(self.time_signature)))
        if self.key is not None:
            words.append(VOCAB.word_of("key", tuple(self.key)))
        words += [VOCAB.word_of("inst", p) for p in self.programs]
        return words


def key_signature_of(tonic: int, scale: str) -> tuple[int, str] | None:
    """The key signature (sharps, mode) that a key constraint implies: its major or minor
    key; a mode borrows the signature of the major scale it is a mode of."""
    offsets = {"major": 0, "dorian": 2, "phrygian": 4, "lydian": 5, "mixolydian": 7,
               "locrian": 11, "pentatonic-major": 0}  # fmt: skip
    if scale in ("minor", "harmonic-minor", "melodic-minor", "pentatonic-minor", "blues"):
        candidates = [(s, "minor") for s in range(-7, 8)]
    elif scale in offsets:
        tonic = (tonic - offsets[scale]) % 12
        candidates = [(s, "major") for s in range(-7, 8)]
    else:
        return None
    fitting = [c for c in candidates if key_signature_tonic(c)[0] == tonic]
    return min(fitting, key=lambda c: abs(c[0])) if fitting else None


def seed_from_text(text: str, name: str = "<seed>") -> list[int]:
    """Ids of a seed's token text: a piece, or the start of one (a header and whole bars).
    A final `end` is dropped: the continuation goes on from there."""
    try:
        ids = words_to_ids(text.split())
    except GrammarError as err:
        raise GenerationError(f"{name}: {err}") from None
    state = GrammarState()
    for index, token in enumerate(ids):
        try:
            state.advance(token)
        except GrammarError as err:
            raise GenerationError(f"{name}: {located(err, index, token)}") from None
    if ids and ids[-1] == END:
        ids = ids[:-1]
    if not ids:
        raise GenerationError(f"{name}: the seed is empty")
    return ids


def read_midi_seed(
    source: str | Path | bytes, name: str | None = None, sustain: bool = SUSTAIN_SEEDS
) -> Encoded:
    """A MIDI seed (a path or the file's bytes) encoded, the sustain pedal (CC64) applied
    when `sustain`: what `generate`, `continue` and the page continue. MidiError and
    CodecError (ValueErrors) name the file."""
    return encode_midi(source, name=name, sustain=sustain)


def seed_from_file(path: str | Path, sustain: bool = SUSTAIN_SEEDS) -> tuple[list[int], str]:
    """(ids, stem) of a seed file: MIDI (.mid/.midi; the sustain pedal applied when
    `sustain`) or token text (anything else)."""
    path = Path(path)
    if not path.is_file():
        raise GenerationError(f"{path}: no such file")
    if path.suffix.lower() in (".mid", ".midi", ".smf", ".kar"):
        try:
            text = read_midi_seed(path, sustain=sustain).text
        except (ValueError, OSError) as err:
            message = str(err)
            raise GenerationError(
                message if str(path) in message else f"{path}: {message}"
            ) from None
    else:
        check_size(path.stat().st_size, str(path), GenerationError)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise GenerationError(f"{path}: neither MIDI nor UTF-8 token text") from None
    return seed_from_text(text, str(path)), path.stem


def cut_seed(ids: Sequence[int], bars: int | None) -> list[int]:
    """The header and the first `bars` bars (all of them when None)."""
    ids = list(ids)
    if bars is None:
        return ids
    if bars < 0:
        raise GenerationError(f"--seed-bars must be 0 or more, got {bars}")
    starts = [i for i, t in enumerate(ids) if t == BAR]
    return ids[: starts[bars]] if bars < len(starts) else ids


def with_style(ids: Sequence[int], style: str | None) -> list[int]:
    ids = list(ids)
    if style is None:
        return ids
    try:
        ids[1] = VOCAB.ids[f"style:{style}"]
    except KeyError:
        styles = [w[6:] for w in VOCAB.tokens[R["style"].start : R["style"].stop]]
        raise GenerationError(f"unknown style {style!r} (styles: {', '.join(styles)})") from None
    return ids


def with_instruments(ids: Sequence[int], constraints: Constraints) -> list[int]:
    """A seed with no notes (a MIDI file of tempo and meter only) encodes to a header that
    names no instrument. It is continued from that header, as a piece started from settings:
    its style, tempo, meter and key stay, and it gets the instruments a header made from
    nothing would have (a piano, or the first allowed by --instruments)."""
    ids = list(ids)
    if BAR in ids or any(VOCAB.tokens[t].startswith("inst:") for t in ids):
        return ids
    return ids + words_to_ids([VOCAB.word_of("inst", p) for p in _default_programs(constraints)])


def prepare_seed(
    seed: str | Path | Sequence[int] | None,
    header: Header | None,
    seed_bars: int | None,
    style: str | None,
    constraints: Constraints,
    sustain: bool = SUSTAIN_SEEDS,
) -> tuple[list[int], str | None, Constraints]:
    """(ids, name, constraints) of what generate() continues: the ids of a header and whole
    bars, from a file (its stem is the name; a MIDI file read with the sustain pedal applied
    when `sustain`), from ids, or from `header` when there is no seed (None: one made from
    the constraints); and the constraints with the seed's key."""
    seed_name = None
    if seed is None:
        head = header or Header(
            key=_implied_key(constraints), programs=_default_programs(constraints)
        )
        ids = words_to_ids(head.words())
    elif isinstance(seed, (str, Path)):
        ids, seed_name = seed_from_file(seed, sustain)
    else:
        ids = seed_from_text(" ".join(VOCAB.tokens[t] for t in seed))
    ids = with_instruments(with_style(cut_seed(ids, seed_bars), style), constraints)
    return ids, seed_name, constraints.with_seed_key(_header_key(ids))


def seed_state(
    ids: Sequence[int], seed_name: str | None, constraints: Constraints
) -> ContinuationState:
    """The grammar and constraint state at the seed's end; GenerationError names the seed
    when the seed cannot keep the constraints."""
    try:
        return ContinuationState(ids, constraints)
    except (ConstraintError, GrammarError) as err:
        raise GenerationError(f"{seed_name or 'seed'}: {err}") from None


def _header_key(ids: Sequence[int]) -> tuple[int, str] | None:
    for token in ids:
        if token == BAR:
            break
        if _FAM[token] == "key":
            return _VAL[token]
    return None


def _default_programs(constraints: Constraints) -> tuple[int, ...]:
    """A piano, or the first allowed instrument when a piano is not allowed."""
    if constraints.instruments is None or 0 in constraints.instruments:
        return (0,)
    return (min(constraints.instruments, key=lambda p: (p < 0, p)),)


def _implied_key(constraints: Constraints) -> tuple[int, str] | None:
    """The key signature of a header made from nothing: the one --key implies; none for
    --scale alone (its tonic is then C, as with a seed without a key)."""
    if constraints.scale is None or constraints.scale[0] == SEED_KEY:
        return None
    return key_signature_of(*constraints.scale)
