"""One browser session's history: every take it made, what the page shows now, and undo.
Every change the user can undo (a new run, "continue from this", a saved edit) records a
snapshot of what the page showed before it; undo hides takes, it never deletes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from music_lm.page.seeds import Seed
from music_lm.page.takes import Take
from music_lm.tokens.rules import END


@dataclass(frozen=True)
class Snapshot:
    """What the page showed: the seed taken from a take (or None: the seed widgets) and the
    takes in the results."""

    seed: Seed | None
    shown: tuple[int, ...]


@dataclass
class History:
    """Every take of the session, what is shown now, and the undo stack."""

    takes: dict[int, Take] = field(default_factory=dict)
    seed: Seed | None = None  # set by "continue from this"; None: the seed widgets decide
    shown: tuple[int, ...] = ()
    runs: int = 0
    undo_stack: list[Snapshot] = field(default_factory=list)

    reserved: int = 0  # take numbers handed out (a running job holds some)

    def reserve(self, count: int) -> int:
        """The first of `count` new take numbers: a job numbers its takes when it starts,
        so an edit saved while it runs cannot take the same number."""
        first = max(self.reserved, max(self.takes, default=0)) + 1
        self.reserved = first + count - 1
        return first

    def new_run(self) -> int:
        self.runs += 1
        return self.runs

    def _push(self) -> None:
        self.undo_stack.append(Snapshot(self.seed, self.shown))

    def add_run(self, takes: Sequence[Take]) -> None:
        self._push()
        for take in takes:
            self.takes[take.number] = take
        self.shown = tuple(t.number for t in takes)

    def add_edit(self, take: Take) -> None:
        self._push()
        self.takes[take.number] = take
        self.shown = (take.number,)

    def continue_from(self, number: int) -> Seed:
        take = self.takes[number]
        self._push()
        ids = take.ids[:-1] if take.ids and take.ids[-1] == END else take.ids
        self.seed = Seed(take.label, tuple(ids), "take", take=number)
        return self.seed

    def show(self, number: int) -> None:
        """Show an earlier take from the history (undoable, too)."""
        if self.shown != (number,):
            self._push()
            self.shown = (number,)

    def forget_seed(self) -> None:
        """Back to the seed widgets (the user chose another example or upload)."""
        if self.seed is not None:
            self._push()
            self.seed = None

    @property
    def can_undo(self) -> bool:
        return bool(self.undo_stack)

    def undo(self) -> None:
        """Back to what the page showed before the last change (the takes stay in the
        history: undo hides, it never deletes)."""
        if self.undo_stack:
            snapshot = self.undo_stack.pop()
            self.seed, self.shown = snapshot.seed, snapshot.shown

    @property
    def shown_takes(self) -> list[Take]:
        return [self.takes[n] for n in self.shown if n in self.takes]


__all__ = [
    "History",
    "Snapshot",
]
