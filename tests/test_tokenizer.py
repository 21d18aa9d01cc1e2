"""The Hugging Face tokenizer maps words 1:1 to the grammar's ids, and saved folders load
back with AutoTokenizer, checked against the grammar."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
from transformers import AutoTokenizer

from music_lm import midi_to_text
from music_lm.tokens.tokenizer import (
    TokenizerMismatchError,
    build_tokenizer,
    check_vocabulary,
    load_tokenizer,
    save_tokenizer,
)
from music_lm.tokens.vocab import VOCAB

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [midi_to_text(path) for path in sorted((ROOT / "midi_in").glob("*.mid"))]


@pytest.mark.parametrize("text", TEXTS, ids=lambda t: t.split("\n")[0][:50])
def test_each_word_is_one_id_and_the_ids_are_the_grammars(text: str) -> None:
    tokenizer = build_tokenizer()
    ids = tokenizer(text)["input_ids"]
    assert ids == [VOCAB.ids[word] for word in text.split()]  # no tokens added around it
    assert tokenizer.decode(ids).split() == text.split()


def test_special_tokens_are_the_grammars_pad_unk_piece_and_end() -> None:
    tokenizer = build_tokenizer()
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id) == (
        VOCAB.ids["<pad>"],
        VOCAB.ids["<unk>"],
    )
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (
        VOCAB.ids["piece"],
        VOCAB.ids["end"],
    )
    assert len(tokenizer) == tokenizer.vocab_size == len(VOCAB)
    assert tokenizer("piece C#4 nonsense")["input_ids"][-1] == VOCAB.ids["<unk>"]


def test_a_saved_folder_loads_with_auto_tokenizer_and_gives_the_same_ids(tmp_path: Path) -> None:
    folder = save_tokenizer(tmp_path / "tok", model_max_length=2048)
    assert {p.name for p in folder.iterdir()} >= {"tokenizer.json", "tokenizer_config.json"}
    plain = AutoTokenizer.from_pretrained(str(folder))
    checked = load_tokenizer(folder)
    for text in TEXTS:
        expected = [VOCAB.ids[word] for word in text.split()]
        assert plain(text)["input_ids"] == checked(text)["input_ids"] == expected
    assert checked.model_max_length == 2048


def test_a_folder_saved_for_another_vocabulary_is_refused_naming_the_token(tmp_path: Path) -> None:
    folder = save_tokenizer(tmp_path / "tok")
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["C4"], vocab["C#4"] = vocab["C#4"], vocab["C4"]  # two ids swapped
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(TokenizerMismatchError, match=r"token 'C4' has id \d+, the grammar gives"):
        load_tokenizer(folder)


def test_a_tokenizer_of_another_size_is_refused() -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    small = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"<unk>": 0, "piece": 1}, unk_token="<unk>"))
    )
    with pytest.raises(TokenizerMismatchError, match="2 tokens, but the grammar has"):
        check_vocabulary(small, name="gpt2-folder")


def test_the_codec_still_imports_no_torch_after_the_tokenizer_exists() -> None:
    code = "import sys, music_lm, music_lm.cli; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
