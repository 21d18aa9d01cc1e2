"""Fuzz target: token text through the grammar, the decoder and the encoder.

    python fuzz/text_target.py -runs=100000 -max_len=16384 build/fuzz/corpus/text

An input is read one of three ways, by its first byte:

- 0x00: a grammar-guided walk (structure-aware). Each two bytes pick one of the tokens
  the grammar allows next, or now and then any vocabulary word (an error deep inside a
  piece); when the bytes run out, the walk completes the piece. This reaches states
  that random text never does, and checks the sampler's masks on the way: every token
  `allowed_ranges` offers must be taken by `advance`, and a piece never reaches a state
  where nothing is allowed before "end".
- 0x01: vocabulary words, two bytes each (any word, in any order).
- anything else: the bytes as UTF-8 text.

Any text may be refused with GrammarError; anything else raised is a crash. A text that
validates must decode, be a fixed point (encode(decode(t)) gives the same words, and
decoding that gives the same score) and survive text -> MIDI -> text unchanged.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root makes `fuzz` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.harness import fuzz_main, instrumented

with instrumented(__name__ == "__main__"):
    from music_lm.midi.read import read_midi
    from music_lm.midi.write import write_midi
    from music_lm.tokens.codec import decode, encode, to_grid
    from music_lm.tokens.grammar import GrammarError, GrammarState
    from music_lm.tokens.rules import Ranges
    from music_lm.tokens.validate import validate
    from music_lm.tokens.vocab import VOCAB

WALK_MODE, WORDS_MODE = 0x00, 0x01
WORDS = VOCAB.tokens
OFF_GRAMMAR = 31  # a step whose low five bits are all set picks any word (1 step in 32)
# When the steering bytes run out, the walk finishes the piece by taking the first
# allowed token of the first family here that has one. This order reaches "end" within a
# few bars: each onset plays the tracks from the lowest up, and a new onset comes as soon
# as one note is down (doubled notes would go on for ever).
COMPLETION_ORDER = ("end", "track", "pos", "bar", "dur", "vel", "pitch", "drum")
MAX_COMPLETION_TOKENS = 2_000
# Steered steps per walk: each asks the grammar for its allowed tokens, which costs five
# times a plain `advance`; longer walks reach nothing new and only slow the fuzzer down.
MAX_WALK_STEPS = 256


def check(data: bytes) -> None:
    """Read `data` as one of the three input kinds (see the module docstring), check it."""
    if data[:1] == bytes((WALK_MODE,)):
        text = walk_text(data[1:])
    elif data[:1] == bytes((WORDS_MODE,)):
        text = words_text(data[1:])
    else:
        text = data.decode("utf-8", "replace")
    check_text(text)


def check_text(text: str) -> None:
    """Validate and decode `text`; for a valid one, check the codec's promises."""
    try:
        validate(text)
        valid = True
    except GrammarError:
        valid = False
    try:
        score = decode(text)
    except GrammarError:
        if valid:
            raise AssertionError("validate accepts a text that decode refuses") from None
        with contextlib.suppress(GrammarError):
            decode(text, partial=True)  # what the page does with a seed being typed
        return
    if not valid:
        raise AssertionError("decode accepts a text that validate refuses")
    canonical = encode(score)
    if canonical.split() != text.split():
        raise AssertionError("encode(decode(text)) is not the text: the grammar let through a "
                             "non-canonical text")  # fmt: skip
    if decode(canonical) != score:
        raise AssertionError("decode(encode(decode(text))) differs from decode(text)")
    back = read_midi(write_midi(score), name="<decoded text>")
    grid, _ = to_grid(back.score)
    if encode(grid) != canonical:
        raise AssertionError("text -> MIDI -> text changed the text")


def words_text(data: bytes) -> str:
    """Two bytes a word, any word of the vocabulary."""
    count = len(WORDS)
    return " ".join(WORDS[int.from_bytes(data[i : i + 2], "big") % count]
                    for i in range(0, len(data) - 1, 2))  # fmt: skip


def walk_text(steer: bytes) -> str:
    """A token text steered by `steer` through the grammar (see the module docstring)."""
    state = GrammarState()
    words: list[str] = []
    for i in range(0, min(len(steer), 2 * MAX_WALK_STEPS) - 1, 2):
        if state.done:
            break
        value = int.from_bytes(steer[i : i + 2], "big")
        if value & 31 == OFF_GRAMMAR:  # any word: the text most likely breaks here
            words.append(WORDS[(value >> 5) % len(WORDS)])
            return " ".join(words)
        _take(state, _nth_allowed(_allowed(state, words), value >> 5), words)
    for _ in range(MAX_COMPLETION_TOKENS):
        if state.done:
            break
        _take(state, _completion(_allowed(state, words)), words)
    return " ".join(words)


def _allowed(state: GrammarState, words: list[str]) -> Ranges:
    ranges = state.allowed_ranges()
    if not ranges:
        raise AssertionError(f"dead end: nothing may follow {_tail(words)}")
    return ranges


def _take(state: GrammarState, token_id: int, words: list[str]) -> None:
    """Advance by a token the grammar offered: refusing it is a crash (the masks lie)."""
    if not state.is_allowed(token_id):
        raise AssertionError(f"{WORDS[token_id]!r} is offered after {_tail(words)}, "
                             "but is_allowed says no")  # fmt: skip
    try:
        state.advance(token_id)
    except GrammarError as err:
        raise AssertionError(f"{WORDS[token_id]!r} is offered after {_tail(words)}, "
                             f"but advance refuses it: {err}") from None  # fmt: skip
    words.append(WORDS[token_id])


def _nth_allowed(ranges: Ranges, n: int) -> int:
    n %= sum(hi - lo for lo, hi in ranges)
    for lo, hi in ranges:
        if n < hi - lo:
            return lo + n
        n -= hi - lo
    raise AssertionError("unreachable: n is below the total")


def _completion(ranges: Ranges) -> int:
    for family in COMPLETION_ORDER:
        family_range = VOCAB.ranges[family]
        for lo, hi in ranges:
            if lo < hi and lo in family_range:
                return lo
    return ranges[0][0]


def _tail(words: list[str]) -> str:
    return repr(" ".join(words[-12:]))


if __name__ == "__main__":
    fuzz_main(check, sys.argv)
