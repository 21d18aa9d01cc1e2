"""A reader for the small EBNF of docs/token-format.md, to check it against the grammar.

It reads rules `name = expression ;` with `|`, `[...]`, `{...}`, `(...)`, quoted words
("bar") and family names (TS, PITCH), and comments `(* ... *)`. The grammar is not
recursive, so each rule is expanded where it is used, and the classic Glushkov sets
(Berry-Sethi) tell which word may follow which: `follow_sets` gives, for every occurrence
of a word in the expanded grammar, the words that may come next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r'\s*(?:(\(\*.*?\*\))|("[^"]*")|([A-Za-z_]+)|([=;|\[\]{}()]))', re.DOTALL)


@dataclass(frozen=True)
class Word:
    """One occurrence of a token family in the expanded grammar, with the rules it is in."""

    family: str  # "piece", "bar", "ts", "dur_long", ...
    rules: tuple[str, ...]  # the rules it was expanded through, outermost first
    index: int  # tells occurrences apart


def parse_rules(text: str) -> dict[str, list]:
    """{rule name: its expression as nested lists} from EBNF text."""
    words = []
    for comment, quoted, name, symbol in _TOKEN.findall(text):
        if comment:
            continue
        words.append(quoted or name or symbol)
    rules: dict[str, list] = {}
    i = 0
    while i < len(words):
        name, equals = words[i], words[i + 1]
        if equals != "=":
            raise ValueError(f"expected '=' after {name!r}, got {equals!r}")
        end = words.index(";", i)
        rules[name] = _expression(words[i + 2 : end])
        i = end + 1
    return rules


def _expression(words: list[str]) -> list:
    """["alt", [seq...], ...] with seq items: a word, or ["opt"|"rep"|"group", expression]."""
    alternatives: list[list] = [[]]
    i = 0
    while i < len(words):
        word = words[i]
        if word == "|":
            alternatives.append([])
        elif word in "[{(":
            close = {"[": "]", "{": "}", "(": ")"}[word]
            depth, j = 0, i
            while True:
                if words[j] in "[{(":
                    depth += 1
                elif words[j] in "]})":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if words[j] != close:
                raise ValueError(f"{word!r} closed by {words[j]!r}")
            kind = {"[": "opt", "{": "rep", "(": "group"}[word]
            alternatives[-1].append([kind, _expression(words[i + 1 : j])])
            i = j
        else:
            alternatives[-1].append(word)
        i += 1
    return ["alt", *alternatives]


class _Glushkov:
    def __init__(self, rules: dict[str, list]) -> None:
        self.rules = rules
        self.follow: dict[Word, set[Word]] = {}
        self.count = 0

    def visit(self, node, path: tuple[str, ...]) -> tuple[bool, set[Word], set[Word]]:
        """(nullable, first, last) of `node`, filling `follow` on the way."""
        if isinstance(node, str):
            if node in self.rules:
                return self.visit(self.rules[node], (*path, node))
            family = node.strip('"').lower()
            self.count += 1
            word = Word(family, path, self.count)
            self.follow[word] = set()
            return False, {word}, {word}
        kind = node[0]
        if kind == "alt":
            nullable, first, last = False, set(), set()
            for sequence in node[1:]:
                n, f, la = self._sequence(sequence, path)
                nullable, first, last = nullable or n, first | f, last | la
            return nullable, first, last
        nullable, first, last = self.visit(node[1], path)
        if kind == "rep":
            for word in last:
                self.follow[word] |= first
        return nullable or kind in ("opt", "rep"), first, last

    def _sequence(self, items: list, path: tuple[str, ...]) -> tuple[bool, set[Word], set[Word]]:
        nullable, first, last = True, set(), set()
        for item in items:
            n, f, la = self.visit(item, path)
            for word in last:
                self.follow[word] |= f
            if nullable:
                first |= f
            last = la | (last if n else set())
            nullable = nullable and n
        return nullable, first, last


def follow_sets(text: str, start: str) -> tuple[set[Word], dict[Word, set[Word]]]:
    """(the words a text may start with, each word's possible next words) of the EBNF."""
    rules = parse_rules(text)
    glushkov = _Glushkov(rules)
    _, first, _ = glushkov.visit(start, (start,))
    return first, glushkov.follow
