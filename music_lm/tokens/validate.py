"""Token text checked against the grammar: words to ids, stepping a `GrammarState`
through them, and errors that name the token, its index and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from music_lm.limits import limits
from music_lm.tokens.fim import HOLE, from_fim
from music_lm.tokens.grammar import GrammarError, GrammarState
from music_lm.tokens.rules import describe_ranges
from music_lm.tokens.vocab import VOCAB

_ID = VOCAB.ids


def words_to_ids(words: Iterable[str]) -> list[int]:
    """Words -> ids; an unknown word is a GrammarError naming it and its index, and more
    words than the `tokens` limit one saying so."""
    words = list(words)
    most = limits().tokens
    if len(words) > most:
        raise GrammarError(
            f"token {most}: the text has {len(words):,} tokens, over the limit of {most:,} "
            "(raise it with --limit tokens=N)",
            most,
            words[most],
        )
    try:
        return [_ID[word] for word in words]
    except KeyError:
        index = next(i for i, word in enumerate(words) if word not in _ID)
        raise GrammarError(
            f"token {index} {words[index]!r}: not a token of the vocabulary", index, words[index]
        ) from None


def located(err: GrammarError, index: int, token_id: int) -> GrammarError:
    """The error of `advance`, now naming the token's index and word."""
    word = VOCAB.tokens[token_id]
    return GrammarError(f"token {index} {word!r}: {err}", index, word)


def check_complete(state: GrammarState, token_count: int) -> None:
    """Raise GrammarError if the text stopped before 'end'."""
    if not state.done:
        expected = describe_ranges(state.allowed_ranges())
        raise GrammarError(
            f"token {token_count}: the text ends before 'end'; expected {expected}",
            token_count,
            None,
        )


def walk(token_ids: Iterable[int]) -> Iterator[tuple[int, GrammarState]]:
    """Step a fresh state through `token_ids`, yielding (id, state after it).

    Raises GrammarError naming the index, the token and what was expected, also
    when the tokens stop before "end". A text with `hole` is read in the
    fill-in-the-middle form; any other text's errors never offer its words.
    """
    token_ids = list(token_ids)
    state = GrammarState(fim=_ID["hole"] in token_ids)
    count = 0
    for count, token_id in enumerate(token_ids, start=1):
        try:
            state.advance(token_id)
        except GrammarError as err:
            raise located(err, count - 1, token_id) from None
        yield token_id, state
    check_complete(state, count)
    if state.fim:
        check_plain_piece(token_ids)


def check_plain_piece(ids: list[int]) -> None:
    """A whole text in the fill-in-the-middle form stands for a plain piece, which must be
    valid too: the form's grammar reads the suffix before the middle, so it cannot see a
    middle note that sounds into the suffix, or a key the middle states and the suffix
    leaves out. The error names the text's `hole`."""
    hole = ids.index(HOLE)
    try:
        plain = from_fim(ids)
        state = GrammarState()
        for token in plain:
            state.advance(token)
    except (GrammarError, ValueError) as err:
        raise GrammarError(
            f"token {hole} 'hole': the piece this fill-in-the-middle text stands for is not "
            f"valid: {err}",
            hole,
            "hole",
        ) from None


def validate(text: str) -> list[int]:
    """Check that `text` is one valid piece; return its token ids."""
    ids = words_to_ids(text.split())
    for _ in walk(ids):
        pass
    return ids
