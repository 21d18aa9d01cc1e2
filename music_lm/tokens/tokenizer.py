"""The Hugging Face tokenizer of the token text: a WordLevel model over the grammar's
vocabulary, so each word is one id and the ids are the grammar's own.

It saves with `save_pretrained` and loads with `AutoTokenizer.from_pretrained`, so a
model folder needs no code of ours to be read. Loading checks that a folder's
vocabulary is this grammar's, word for word: a model trained on another
vocabulary would otherwise emit the wrong tokens silently.

This module imports transformers (and with it torch); the codec never imports it.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from music_lm.errors import MusicLmError
from music_lm.tokens.vocab import VOCAB

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "piece", "end"
DEFAULT_CONTEXT = 1024


class TokenizerMismatchError(MusicLmError, ValueError):
    """A saved tokenizer whose vocabulary is not this grammar's; the message names the first
    difference."""


def build_tokenizer(
    model_max_length: int = DEFAULT_CONTEXT, size: int | None = None
) -> PreTrainedTokenizerFast:
    """The tokenizer of the token text. It adds no tokens of its own: a piece's text
    already begins with `piece` and ends with `end`. With `size`: that of the vocabulary's
    first `size` tokens, as saved with a model trained before the vocabulary grew."""
    words = VOCAB.tokens[: len(VOCAB) if size is None else size]
    model = WordLevel({word: i for i, word in enumerate(words)}, unk_token=UNK)
    backend = Tokenizer(model)
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=UNK,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        model_max_length=model_max_length,
    )


def save_tokenizer(directory: str | Path, model_max_length: int = DEFAULT_CONTEXT) -> Path:
    """Write the tokenizer into `directory` (tokenizer.json and tokenizer_config.json)."""
    path = Path(directory)
    build_tokenizer(model_max_length).save_pretrained(path)
    return path


def load_tokenizer(directory: str | Path, size: int | None = None) -> PreTrainedTokenizerFast:
    """Load a saved tokenizer with AutoTokenizer and check it is this grammar's (with
    `size`: the grammar's first `size` tokens, that of a model trained before the
    vocabulary grew)."""
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    check_vocabulary(tokenizer, name=str(directory), size=size)
    return tokenizer


def check_vocabulary(
    tokenizer: PreTrainedTokenizerFast, name: str = "tokenizer", size: int | None = None
) -> None:
    """Raise TokenizerMismatchError unless `tokenizer` maps every word to the grammar's id
    (with `size`: every word of the grammar's first `size`)."""
    size = len(VOCAB) if size is None else size
    vocab = tokenizer.get_vocab()
    if len(vocab) != size:
        expected = f"the grammar has {len(VOCAB)}" if size == len(VOCAB) else f"expected {size}"
        raise TokenizerMismatchError(
            f"{name}: {len(vocab)} tokens, but {expected}; it was saved for another vocabulary"
        )
    for token_id, word in enumerate(VOCAB.tokens[:size]):
        if vocab.get(word) != token_id:
            found = vocab.get(word)
            where = "is missing" if found is None else f"has id {found}"
            raise TokenizerMismatchError(
                f"{name}: token {word!r} {where}, the grammar gives it id {token_id}"
            )
