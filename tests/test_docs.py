"""The docs tell the truth: examples are valid and canonical, tables match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from music_lm import decode, encode, validate
from music_lm.tokens.rules import SUCCESSIONS, Phase
from music_lm.tokens.vocab import VOCAB

ROOT = Path(__file__).resolve().parents[1]
TOKEN_FORMAT = (ROOT / "docs" / "token-format.md").read_text(encoding="utf-8")


def _token_text_blocks(markdown: str) -> list[str]:
    blocks = re.findall(r"^```\w*\n(.*?)^```$", markdown, flags=re.DOTALL | re.MULTILINE)
    return [b for b in blocks if b.startswith("piece style:")]


DOC_EXAMPLES = _token_text_blocks(TOKEN_FORMAT) + _token_text_blocks(
    (ROOT / "README.md").read_text(encoding="utf-8")
)


def test_the_docs_have_the_five_worked_examples() -> None:
    for heading in ("### A melody", "### A chord progression", "### A drum groove", "### Tempo",
                    "### A pickup and a meter change inside a bar"):  # fmt: skip
        assert heading in TOKEN_FORMAT
    assert len(DOC_EXAMPLES) >= 6


@pytest.mark.parametrize("text", DOC_EXAMPLES, ids=lambda t: t.split("\n")[0][:60])
def test_every_documented_example_is_valid_and_canonical(text: str) -> None:
    validate(text)
    if "\nhole " in text:  # the fill-in-the-middle form: its plain piece, word for word
        from music_lm.tokens.fim import from_fim, to_fim

        fim = validate(text)
        plain = validate(encode(decode(text)))
        assert from_fim(fim) == plain
        start = fim.index(VOCAB.ids["hole"])  # the prefix ends where the middle began
        middle_bars = fim[fim.index(VOCAB.ids["fill"]) + 1 : -1].count(VOCAB.ids["bar"])
        bars = [i for i, t in enumerate(plain) if t == VOCAB.ids["bar"]] + [len(plain) - 1]
        stop = bars[bars.index(start) + middle_bars]
        assert to_fim(plain, start, stop) == fim
        return
    assert encode(decode(text)) == text


def test_family_table_matches_the_vocabulary() -> None:
    rows = re.findall(r"^\| (\w+) \| .* \| (\d+) \| .* \|$", TOKEN_FORMAT, flags=re.MULTILINE)
    documented = {family: int(count) for family, count in rows if family in VOCAB.ranges}
    assert documented == {family: len(r) for family, r in VOCAB.ranges.items()}
    assert f"{len(VOCAB):,} tokens in all" in TOKEN_FORMAT


def test_succession_table_matches_the_grammar() -> None:
    for phase, families in SUCCESSIONS.items():
        row = f"| {phase.name} | {', '.join(families)} |"
        assert row.replace("|  |", "| |") in TOKEN_FORMAT or (
            not families and f"| {phase.name} | |" in TOKEN_FORMAT
        ), row


# The phase the grammar is in after a word of each family: in the header, then in the body.
_HEADER_PHASE = {"piece": "STYLE", "style": "TEMPO", "tempo": "TS", "ts": "KEY_OR_INST",
                 "key": "INST", "inst": "INST"}  # fmt: skip
_BODY_PHASE = {"bar": "BAR_START", "ts": "AFTER_TS", "pos": "AFTER_POS", "tempo": "AFTER_TEMPO",
               "key": "AFTER_KEY", "track": "AFTER_TRACK", "dur_long": "AFTER_DUR_LONG",
               "dur": "AFTER_DUR", "vel": "AFTER_VEL", "pitch": "AFTER_NOTE",
               "drum": "AFTER_NOTE", "end": "DONE"}  # fmt: skip


# The fill-in-the-middle form: after `hole`, its restated words, and `fill`.
_RESTATE_PHASE = {"tempo": "HOLE_TS", "ts": "HOLE_KEY", "key": "HOLE_AFTER_KEY"}
_FIM_PHASE = {"hole": "HOLE_TEMPO", "fill": "FILL_START"}


def _family(word) -> str:
    return "fim" if word.family in _FIM_PHASE else word.family  # both words of one family


def test_the_documented_ebnf_allows_exactly_the_parsers_successions() -> None:
    """Which family may follow which, read off the EBNF of the docs (its Glushkov follow
    sets), is the succession table the parser runs on, phase by phase."""
    from ebnf import follow_sets

    ebnf = re.search(r"```ebnf\n(.*?)```", TOKEN_FORMAT, flags=re.DOTALL)[1]
    first, follow = follow_sets(ebnf, "piece")
    from_docs: dict[str, set[str]] = {"START": {word.family for word in first}}
    for word, after in follow.items():
        if "header" in word.rules:
            table = _HEADER_PHASE
        elif "restate" in word.rules:
            table = _RESTATE_PHASE
        else:
            table = {**_BODY_PHASE, **_FIM_PHASE}
        from_docs.setdefault(table[word.family], set()).update(_family(w) for w in after)
    assert from_docs == {phase.name: set(families) for phase, families in SUCCESSIONS.items()}


def test_the_ebnf_reader_sees_a_broken_grammar() -> None:
    """The check above is not blind: a grammar without short bars, as before [bars], fails it."""
    from ebnf import follow_sets

    ebnf = re.search(r"```ebnf\n(.*?)```", TOKEN_FORMAT, flags=re.DOTALL)[1]
    without_cuts = ebnf.replace("[cut]", "").replace("| cut)", ")")
    _, follow = follow_sets(without_cuts, "piece")
    after_pos = {w.family for word, after in follow.items() if word.family == "pos" for w in after}
    assert after_pos != set(SUCCESSIONS[Phase.AFTER_POS])


def test_the_corpus_docs_name_every_music21_collection_and_its_style() -> None:
    from music_lm.corpus.sources import MUSIC21_STYLES

    corpus_doc = (ROOT / "docs" / "corpus.md").read_text(encoding="utf-8")
    table = corpus_doc.split("music21's collections and their tags:")[1].split("\n\n")[1]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    documented: dict[str, set[str]] = {}
    for styles, collections in rows:
        names = set(re.findall(r"`([\w-]+)`", collections))
        documented.update({c: set(re.findall(r"`([\w-]+)`", styles)) for c in names})
    for collection, style in MUSIC21_STYLES.items():
        if collection in documented:
            assert style in documented[collection], collection
        else:  # the composer row: the folder is named after the composer, and so is the style
            composers = set(re.findall(r"`([\w-]+)`", rows[0][0]))
            assert style in composers, collection
            assert collection.startswith(style), collection


def _release_script():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "release_model", ROOT / "scripts" / "release_model.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_readme_says_what_the_model_can_do_as_its_card_does() -> None:
    """README's "What the default model can and can't do" is the card's section of the
    same name, line for line (both rendered from the shipped model's figures)."""

    def section(text: str, heading: str) -> list[str]:
        body = text[text.index(heading) + len(heading) :].split("\n## ", 1)[0]
        return [line for line in body.splitlines() if line.startswith("- ")]

    card = section((ROOT / "docs" / "model-card.md").read_text(encoding="utf-8"),
                   "## What it can and can't do")  # fmt: skip
    readme = section((ROOT / "README.md").read_text(encoding="utf-8"),
                     "## What the default model can and can't do")  # fmt: skip
    assert len(card) == 5
    assert readme == card


def test_the_model_card_gives_the_shipped_models_measured_figures() -> None:
    """The card's table is the evaluation of the shipped model, its goals table and verdict
    follow from the figures (`release_model.goals`), and the model beats the unigram by far
    on each source."""
    import json

    card = (ROOT / "docs" / "model-card.md").read_text(encoding="utf-8")
    shipped = ROOT / "music_lm" / "models" / "default"
    assert (shipped / "README.md").read_text(encoding="utf-8") == card
    results = json.loads((shipped / "eval.json").read_text())["results"]
    for label, name in (("this model", "gpt2"), ("order-3 Markov", "markov-3"),
                        ("unigram", "unigram")):  # fmt: skip
        row = re.search(rf"^\| {label} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", card, re.M)
        assert row, label
        assert float(row[1]) == pytest.approx(results[name]["loss"], abs=1e-4)
        assert float(row[3]) == pytest.approx(results[name]["bits_per_note"], abs=0.01)
    release = _release_script()
    goals = release.goals(results, release.PREVIOUS_MUSIC21_BITS)
    met = sum(goal.met for goal in goals)
    for goal in goals:  # each goal's row gives its measured figure and whether it is met
        row = re.search(
            rf"^\| {re.escape(goal.text)} \| ≤ [\d.]+ \| ([\d.]+) \| (\S+) \|", card, re.M
        )
        assert row, goal.text
        assert float(row[1]) == pytest.approx(goal.measured, abs=0.01)
        assert (row[2] == "yes") == goal.met
    if met == len(goals):
        assert f"meets all {len(goals)} goals" in card
    else:
        assert f"meets {met} of {len(goals)} goals" in card
    for source in ("music21", "simutrans-data"):  # far ahead of the unigram on each source
        gpt2 = results["gpt2"]["sources"][source]["bits_per_note"]
        assert gpt2 < 0.7 * results["unigram"]["sources"][source]["bits_per_note"]
    assert results["gpt2"]["tokens"] == results["markov-3"]["tokens"]
