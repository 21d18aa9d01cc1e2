"""Every option of `music-lm generate` and `music-lm continue`, end to end.

Each row of CASES runs the command in process (through `main`, as the installed command
runs) with a tiny untrained GPT-2, and reads what it wrote with mido through the checker of
tests/midi_checker.py, whose scale, range and instrument tables are written there, not
imported. An untrained model writes nearly any allowed token, so an option the command
dropped on the way shows in its output: notes out of the scale, a chord under
--max-polyphony 1, a bar too many.

Each row also names a control: the same run without the option (or with its opposite). Its
check must fail on the control's output, so no check here passes whatever the command did.
A test lists every option of both commands and fails when one has no row.

Some rows need a model with a will of its own, given by patching the sampler's forward
pass: one keen on tempo, meter or key changes (to show what the locks hold back), on very
low notes (the instrument ranges), or one that ranks the tokens with wide gaps, so that
sampling is greedy at a low temperature or a narrow top-k/top-p/min-p (then two random
seeds give the same notes) and a draw without them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import patch

import pytest
import typer.main
from midi_checker import (
    GROUPS,
    NoteRow,
    bar_lines,
    changes,
    continuation_beat,
    melodic_notes,
    midi_facts,
    new_notes,
    playable,
    scale_classes,
    text_event,
)

from music_lm.cli import app, main
from music_lm.tokens.vocab import VOCAB

EXAMPLES = Path(__file__).resolve().parent.parent / "midi_in"
# A violin (program 40) alone in 6/8 and B minor, from a pickup bar of one note: short
# bars, and every new note melodic.
SEED = EXAMPLES / "folk_tune.mid"
BEATS_PER_BAR = 3  # quarter notes in a bar of 6/8
PICKUP_BEATS = 0.5  # the seed's first bar: a pickup of one eighth note
# Flute (73), bass (33), piano (0) and drums: for --instruments. (An untrained model that
# picks the drum track first tends to stay there: a drum hit is most of the vocabulary.)
BAND = EXAMPLES / "band_with_drums.mid"
# A piano in 4/4 (written by the runner where it runs, as PEDALLED_PIANO_NOTES says): C4, E4
# and G4 struck an eighth apart, each released after an eighth, the sustain pedal down from
# the start to beat 3; a second bar of one note.
PEDALLED = "@pedalled"
PEDALLED_PIANO_NOTES = ((0, 0.5, 60), (0.5, 1.0, 64), (1.0, 1.5, 67), (4.0, 5.0, 72))
PEDAL_UP_BEAT = 3.0


def pedalled_piano() -> bytes:
    import mido
    from conftest import build_midi

    ppq = 480
    events = [
        (0, mido.Message("control_change", control=64, value=127)),
        (int(PEDAL_UP_BEAT * ppq), mido.Message("control_change", control=64, value=0)),
    ]
    for onset, end, pitch in PEDALLED_PIANO_NOTES:
        events += [
            (int(onset * ppq), mido.Message("note_on", note=pitch, velocity=80)),
            (int(end * ppq), mido.Message("note_off", note=pitch, velocity=0)),
        ]
    return build_midi(events, ticks_per_beat=ppq)


SEED_FILES = {PEDALLED: ("pedalled_piano.mid", pedalled_piano)}

# ---- the model's will: bias added to the logits of some token families ----

PUSH_LOGITS = 20.0  # far above an untrained model's spread of about 0.1


def _family_ids(family: str) -> range:
    return VOCAB.ranges[family]


def _low_pitch_ids() -> range:
    start = VOCAB.ranges["pitch"].start
    return range(start, start + 28)  # MIDI 0..27: below every tested instrument but piano


def pushing(ids: Callable[[], range]) -> Callable:
    """A forward pass that wants the tokens `ids()` above all others."""
    from music_lm.generation.models import _Runner

    original = _Runner._forward

    def forward(self, ids_, positions):
        logits = original(self, ids_, positions)
        chosen = ids()
        logits[..., chosen.start : chosen.stop] += PUSH_LOGITS
        return logits

    return patch.object(_Runner, "_forward", forward)


def repeating() -> contextlib.AbstractContextManager:
    """A looping model: it wants again the token it has just written."""
    from music_lm.generation.models import _Runner

    original = _Runner._forward

    def forward(self, ids_, positions):
        logits = original(self, ids_, positions)  # (B, V)
        for row in range(logits.shape[0]):
            logits[row, int(ids_[row, -1])] += PUSH_LOGITS
        return logits

    return patch.object(_Runner, "_forward", forward)


def _off_kit_drum_ids() -> list[int]:
    start = VOCAB.ranges["drum"].start
    return [start + key for key in (*range(0, 35), *range(82, 128))]


def _long_duration_ids() -> list[int]:
    return [
        *VOCAB.ranges["dur_long"],
        *range(VOCAB.ranges["dur"].stop - 24, VOCAB.ranges["dur"].stop),
    ]


def pushing_ids(ids: Callable[[], list[int]]) -> Callable[[], contextlib.AbstractContextManager]:
    """A forward pass that wants the token ids `ids()` above all others."""

    def will() -> contextlib.AbstractContextManager:
        from music_lm.generation.models import _Runner

        original = _Runner._forward
        chosen = ids()

        def forward(self, ids_, positions):
            logits = original(self, ids_, positions)
            logits[..., chosen] += PUSH_LOGITS
            return logits

        return patch.object(_Runner, "_forward", forward)

    return will


RANK_GAP = 0.7  # between the logits of consecutive ids, for `ranked`


def ranked() -> contextlib.AbstractContextManager:
    """A model that ranks every token by its id, the lower the likelier, RANK_GAP apart: at
    temperature 1 the likeliest allowed token gets about 50% (a draw: two random seeds part
    ways within a few tokens); at temperature 0.05 the next one gets e^-14 of it, and top-k
    1, top-p 0.01 or min-p 0.5 leave only the likeliest. Greedy, the same notes come from
    any random seed."""
    import torch

    from music_lm.generation.models import _Runner

    original = _Runner._forward

    def forward(self, ids_, positions):
        logits = original(self, ids_, positions)  # (B, T, V) or (B, V): only the last dim
        ranks = torch.arange(logits.shape[-1], dtype=logits.dtype, device=logits.device)
        return torch.zeros_like(logits) - RANK_GAP * ranks

    return patch.object(_Runner, "_forward", forward)


def always_a_copy() -> contextlib.AbstractContextManager:
    """Every variant judged a copy of the seed: every retry is spent."""
    return patch(
        "music_lm.generation.runner.post_check", lambda _ids, _seed_length: "copies the seed"
    )


# ---- running the command ----


@dataclass
class Take:
    """What one run of the command left: exit code, output, and the files it wrote."""

    code: int
    out: str
    err: str
    folder: Path
    stem: str
    runner: Runner = field(repr=False)
    key: tuple = field(repr=False)  # (command, options, seed, will, before)

    def rerun(self, *more: str) -> Take:
        """The same run with `more` options after the row's (a later flag wins)."""
        command, options, seed, will, _before = self.key
        return self.runner(command, (*options, *more), seed=seed, will=will)

    def instead(self, *options: str) -> Take:
        """The same command and model leaning with `options` in place of the row's."""
        command, _options, seed, will, _before = self.key
        return self.runner(command, options, seed=seed, will=will)

    def file(self, suffix: str, variant: int = 1) -> Path:
        return self.folder / f"{self.stem}-{variant}{suffix}"

    def facts(self, variant: int = 1) -> dict:
        assert self.code == 0, self.err
        return midi_facts(self.file(".mid", variant).read_bytes())

    def start_beat(self, variant: int = 1) -> float:
        return continuation_beat(self.facts(variant))

    def new_notes(self, variant: int = 1) -> list[NoteRow]:
        """(channel, program or None for drums, onset, end, pitch) of each new note."""
        return new_notes(self.facts(variant))

    def melodic(self, variant: int = 1) -> list[NoteRow]:
        return melodic_notes(self.facts(variant))

    def text_event(self) -> str:
        """The settings line the MIDI carries (model hash, random seed, variant)."""
        return text_event(self.file(".mid").read_bytes())


class Runner:
    """Runs `music-lm COMMAND` in process with the base options, a row's options over them;
    each distinct run once (controls and references share runs)."""

    def __init__(self, root: Path, models: dict[str, Path]) -> None:
        self.root, self.models = root, models
        self.runs: dict[tuple, Take] = {}

    def _file(self, seed: Path | str) -> Path:
        """The seed file: an example, or one of SEED_FILES written here."""
        if seed not in SEED_FILES:
            return seed
        name, make = SEED_FILES[seed]
        path = self.root / "seeds" / name
        if not path.is_file():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(make())
        return path

    def _in(self, seed: Path) -> Path:
        """The folder `continue` reads: the seed alone."""
        folder = self.root / f"in-{seed.stem}"
        if not folder.is_dir():
            folder.mkdir()
            shutil.copy(seed, folder / seed.name)
        return folder

    def base(self, command: str, seedless: bool) -> dict[str, tuple[str, ...]]:
        base = {"--model": (str(self.models["@a"]),), "--bars": ("1",), "--seed-bars": ("1",),
                "--random-seed": ("1",)}  # fmt: skip
        if seedless:
            del base["--seed-bars"]
        return base

    def __call__(self, command: str, options: tuple[str, ...], *, seed: Path | None = SEED,
                 will: Callable | None = None, before: Callable | None = None) -> Take:  # fmt: skip
        key = (command, options, seed, will, before)
        if key not in self.runs:
            self.runs[key] = self._run(*key)
        return self.runs[key]

    def _run(self, command, given, seed_given, will, before) -> Take:
        options = tuple(str(self.models.get(o, o)) for o in given)  # "@b": model b's folder
        seed = None if seed_given is None else self._file(seed_given)
        base = self.base(command, seed is None)
        for flag in set(options) & set(base):  # a row's option replaces the base's
            del base[flag]
        args = [a for flag, values in base.items() for a in (flag, *values)]
        folder = self.root / f"out-{len(self.runs)}"
        folder.mkdir()
        if before is not None:
            before(folder)
        source = [] if seed is None else [str(seed if command == "generate" else self._in(seed))]
        argv = ["music-lm", command, *source, "-o", str(folder), *args, *options]
        stem = "generated" if seed is None else seed.stem
        stem = options[options.index("--name") + 1] if "--name" in options else stem
        out, err = io.StringIO(), io.StringIO()
        with contextlib.ExitStack() as stack:
            stack.enter_context(patch.object(sys, "argv", argv))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(err))
            # a default (midi_in/, midi_out/) the command fell back to is in here, not
            # in the checkout
            stack.enter_context(contextlib.chdir(self.root))
            if will is not None:
                stack.enter_context(will())
            try:
                main()
                code = 0
            except SystemExit as stop:
                code = stop.code or 0
        key = (command, given, seed_given, will, before)
        return Take(code, out.getvalue(), err.getvalue(), folder, stem, self, key)


def other_tiny_model_folder(folder: Path) -> Path:
    """A second untrained tiny model: other weights, so other notes from the same seed."""
    import torch

    from music_lm.model.folder import model_config, model_meta, new_model, save_model_folder

    torch.manual_seed(1)
    folder.mkdir(parents=True, exist_ok=True)
    return save_model_folder(new_model(model_config("tiny", context=64)), folder, model_meta())


@pytest.fixture(scope="module")
def other_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return other_tiny_model_folder(tmp_path_factory.mktemp("other-tiny-model"))


@pytest.fixture(scope="module")
def run(tiny_model: Path, other_tiny_model: Path, tmp_path_factory) -> Runner:
    return Runner(tmp_path_factory.mktemp("options"), {"@a": tiny_model, "@b": other_tiny_model})


# ---- the checks: each reads the output, and fails on its control's ----


def ok(take: Take) -> None:
    assert take.file(".mid").is_file()


def in_output_folder(take: Take) -> None:
    ok(take)
    assert sorted(p.name for p in take.folder.iterdir()) == [
        f"{take.stem}-1{s}" for s in (".json", ".mid", ".txt")
    ]


def seed_first_bar_before_marker(take: Take) -> None:
    ok(take)

    def first_bar(facts: dict) -> list[tuple[float, int]]:
        return sorted((on, p) for notes in facts["notes"].values() for on, _e, p in notes
                      if on < PICKUP_BEATS)  # fmt: skip

    cut = PICKUP_BEATS  # --seed-bars 1: the pickup bar
    expected, before = first_bar(midi_facts(SEED.read_bytes())), first_bar(take.facts())
    assert expected, "the seed's first bar has notes"
    assert take.start_beat() == cut
    assert before == expected


def marker_after_two_seed_bars(take: Take) -> None:
    assert take.start_beat() == PICKUP_BEATS + BEATS_PER_BAR  # the pickup and one whole bar


def exactly_bars(count: int) -> Callable[[Take], None]:
    def check(take: Take) -> None:
        lines = bar_lines(take.facts(), take.start_beat(), count)
        onsets = [n[2] for n in take.new_notes()]
        assert max(onsets) < lines[-1] - 1e-9, "a note after the last bar"
        assert any(lines[-2] - 1e-9 <= o for o in onsets), f"no note in new bar {count}"

    return check


def two_different_variants(take: Take) -> None:
    assert take.file(".mid", 2).is_file()
    assert take.new_notes(1) != take.new_notes(2)


def model_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for weights in sorted(folder.glob("*.safetensors")):
        digest.update(weights.read_bytes())
    return digest.hexdigest()[:16]


def made_by_model_b(take: Take) -> None:
    ok(take)
    assert f"model {model_hash(take.runner.models['@b'])}," in take.text_event()


def same_notes_as_model_b_alone(take: Take) -> None:
    assert take.new_notes() == take.instead("--model", "@b").new_notes()


def first_bar_from_model_a_then_model_b(take: Take) -> None:
    start = take.start_beat()
    first_bar = [n for n in take.new_notes() if n[2] < start + BEATS_PER_BAR]
    alone = take.instead("--bars", "2")  # model a alone
    assert first_bar == [n for n in alone.new_notes() if n[2] < start + BEATS_PER_BAR]
    assert take.new_notes() != alone.new_notes()  # the second bar is model b's


def style_bach(take: Take) -> None:
    ok(take)
    assert take.file(".txt").read_text().split()[:2] == ["piece", "style:bach"]


def greedy(take: Take) -> None:
    """The same notes under three other random seeds: sampling has only one choice. (One
    other seed is not enough for the control: a bar of few choices can come out the same
    from two seeds by chance.)"""
    for seed in ("2", "3", "4"):
        assert take.new_notes() == take.rerun("--random-seed", seed).new_notes(), seed


def random_seed_5(take: Take) -> None:
    assert ", random seed 5," in take.text_event()
    assert take.new_notes() == take.rerun().new_notes()


def pitches_in(tonic: int, scale: str) -> Callable[[Take], None]:
    classes = scale_classes(tonic, scale)

    def check(take: Take) -> None:
        outside = [n for n in take.melodic() if n[4] % 12 not in classes]
        assert not outside, f"{len(outside)} new notes outside {scale} on {tonic}: {outside[:3]}"

    return check


def pitches_within(low: int, high: int) -> Callable[[Take], None]:
    def check(take: Take) -> None:
        outside = [n for n in take.melodic() if not low <= n[4] <= high]
        assert not outside, f"new notes outside {low}..{high}: {outside[:3]}"

    return check


def within_instrument_ranges(take: Take) -> None:
    outside = [n for n in take.melodic() if not playable(n[1])[0] <= n[4] <= playable(n[1])[1]]
    assert not outside, f"new notes outside their instrument's range: {outside[:3]}"


def somewhere_outside_instrument_ranges(take: Take) -> None:
    assert any(not playable(n[1])[0] <= n[4] <= playable(n[1])[1] for n in take.melodic())


def one_note_at_a_time(take: Take) -> None:
    # (one note at a time may be a single long note: no minimum count here; the control,
    # chords, shows the check can fail)
    facts, notes = take.facts(), take.new_notes()
    assert notes, "no new notes"
    for channel, _program, onset, _end, _pitch in notes:
        sounding = [n for n in facts["notes"][channel] if n[0] <= onset < n[1]]
        assert len(sounding) <= 1, f"{len(sounding)} notes at beat {onset} on channel {channel}"


def bass_only(take: Take) -> None:
    others = [n for n in take.new_notes() if n[1] not in GROUPS["bass"]]
    assert take.new_notes(), "no new notes"
    assert not others, f"new notes of other instruments: {others[:3]}"


def changes_after_marker(kind: str, present: bool) -> Callable[[Take], None]:
    """A tempo ("tempos"), meter ("meters") or key ("keys") event in the new bars."""

    def check(take: Take) -> None:
        start = take.start_beat()
        found = [e for e in changes(take.facts()[kind]) if e[0] >= start - 1e-9]
        assert bool(found) == present, f"{kind} from beat {start}: {found}"

    return check


def starts_at_tempo(bpm: float) -> Callable[[Take], None]:
    def check(take: Take) -> None:
        assert take.facts()["tempos"][0] == (0.0, bpm)

    return check


def in_three_four(take: Take) -> None:
    facts = take.facts()
    assert facts["meters"] == [(0.0, (3, 4))]
    assert bar_lines(facts, 0.0, 1) == [0.0, 3.0]


def refused_for_budget(take: Take) -> None:
    assert take.code == 2
    assert "cannot hold 1 new bars" in take.err


def one_retry_then_kept(take: Take) -> None:
    ok(take)
    assert "1 retries, kept although it copies the seed" in take.out


def named_tune(take: Take) -> None:
    ok(take)
    assert take.stem == "tune"
    assert take.file(".mid").is_file()


def on_the_cpu(take: Take) -> None:
    import json

    ok(take)
    assert json.loads(take.file(".json").read_text())["device"] == "cpu"


def stale(folder: Path) -> None:
    """An earlier run's output in the folder: what --force overwrites."""
    (folder / f"{SEED.stem}-1.mid").write_bytes(b"stale")


def overwrote_the_stale_file(take: Take) -> None:
    ok(take)
    assert take.file(".mid").read_bytes()[:4] == b"MThd"


def unisons(take: Take) -> int:
    """New notes that start a pitch their track already starts at the same onset."""
    starts = [(n[0], n[2], n[4]) for n in take.new_notes()]
    return len(starts) - len(set(starts))


def some_unisons(take: Take) -> None:
    assert unisons(take) > 0


def no_unisons(take: Take) -> None:
    assert take.new_notes(), "no new notes"
    assert unisons(take) == 0


def new_drum_keys(take: Take) -> set[int]:
    keys = {n[4] for n in take.new_notes() if n[1] is None}
    assert keys, "no new drum notes"
    return keys


def drums_on_the_gm_kit(take: Take) -> None:
    assert new_drum_keys(take) <= set(range(35, 82))


def drums_on_the_seeds_keys(take: Take) -> None:
    seed = {p for o, _e, p in take.facts()["notes"].get(9, []) if o < take.start_beat()}
    assert new_drum_keys(take) <= seed


def drums_of_half_a_quarter(take: Take) -> None:
    end = bar_lines(take.facts(), take.start_beat(), 1)[-1]
    lengths = {round(n[3] - n[2], 6) for n in take.new_notes() if n[1] is None and n[3] < end}
    assert lengths == {0.5}, lengths


def rings_past_the_end(take: Take) -> None:
    end = bar_lines(take.facts(), take.start_beat(), 1)[-1]
    assert any(n[3] > end + 1e-9 for n in take.new_notes())


def nothing_past_the_end(take: Take) -> None:
    end = bar_lines(take.facts(), take.start_beat(), 1)[-1]
    notes = [n for notes in take.facts()["notes"].values() for n in notes]
    assert notes
    assert all(stop <= end + 1e-9 for _onset, stop, _pitch in notes)


def longest_repeat(words: list[str]) -> int:
    """The longest stretch of a block of 1..8 words repeated (twice or more)."""
    best = 0
    for period in range(1, 9):
        run = 0
        for i in range(period, len(words)):
            run = run + 1 if words[i] == words[i - period] else 0
            if run >= period:
                best = max(best, run + period)
    return best


def runs_of_at_most_8(take: Take) -> None:
    ok(take)
    assert longest_repeat(take.file(".txt").read_text().split()) <= 8


def seed_notes(take: Take) -> list[tuple[float, float, int]]:
    """(onset, end, pitch) of the notes before the continuation marker."""
    start = take.start_beat()
    return sorted(n for notes in take.facts()["notes"].values() for n in notes if n[0] < start)


def held_by_the_pedal(take: Take) -> None:
    """The pedalled seed's first bar as it sounds: each note held until the pedal lifts."""
    assert take.start_beat() == 4.0  # --seed-bars 1: the first bar
    held = [(on, max(end, PEDAL_UP_BEAT), p) for on, end, p in PEDALLED_PIANO_NOTES if on < 4]
    assert seed_notes(take) == held


def released_as_written(take: Take) -> None:
    assert seed_notes(take) == [n for n in PEDALLED_PIANO_NOTES if n[0] < take.start_beat()]


def adapted_for_2_steps(take: Take) -> None:
    import json

    ok(take)
    record = json.loads(take.file(".json").read_text())["adaptation"]
    assert record, "no adaptation recorded"
    assert [model["steps"] for model in record] == [2]


def pitch_classes_only(classes: set[int], program: int | None = None) -> Callable[[Take], None]:
    """Every new melodic note (of `program`, when given) is of these pitch classes."""

    def check(take: Take) -> None:
        notes = [n for n in take.melodic() if program is None or n[1] == program]
        assert notes, "no new notes to check"
        outside = [n for n in notes if n[4] % 12 not in classes]
        assert not outside, f"{len(outside)} new notes outside {sorted(classes)}: {outside[:3]}"

    return check


def bass_in_c_major_triad_the_rest_free(take: Take) -> None:
    pitch_classes_only({0, 4, 7}, program=33)(take)
    assert any(n[4] % 12 not in {0, 4, 7} for n in take.melodic() if n[1] != 33)


def d_minor_chart(folder: Path) -> None:
    """A chord chart beside the output folder, where the command runs."""
    (folder.parent / "chart.txt").write_text("Dm\n")


# ---- the table ----


@dataclass(frozen=True)
class Case:
    id: str
    covers: tuple[str, ...]  # the commands' parameter names this row tests
    options: tuple[str, ...]
    check: Callable[[Take], None]
    control: tuple[str, ...] | None  # options whose output the check must reject
    commands: tuple[str, ...] = ("generate", "continue")
    will: Callable | None = None  # the model's leaning (a patch), for row and control
    seed: Path | str | None = SEED  # None: from a header; a str: one of SEED_FILES
    before: Callable | None = None
    why_no_control: str = ""


CASES = (
    Case("seed", ("seed", "source", "output"), (), seed_first_bar_before_marker, None,
         why_no_control="the control is the seedless rows: no notes before their marker"),
    Case("output", ("output",), (), in_output_folder, None,
         why_no_control="a run without -o writes to ./midi_out: see test_cli_defaults"),
    Case("bars", ("bars",), ("--bars", "2"), exactly_bars(2), ()),
    Case("seed-bars", ("seed_bars",), ("--seed-bars", "2"), marker_after_two_seed_bars, ()),
    Case("variants", ("variants",), ("--variants", "2"), two_different_variants, ()),
    Case("model", ("model",), ("--model", "@b"), made_by_model_b, ()),
    Case("mix weights", ("mix", "mix_weights"),
         ("--model", "@a", "--model", "@b", "--mix", "weights", "--mix-weights", "0,1"),
         same_notes_as_model_b_alone,
         ("--model", "@a", "--model", "@b", "--mix", "weights", "--mix-weights", "1,0")),
    Case("mix schedule", ("mix",),
         ("--model", "@a", "--model", "@b", "--mix", "schedule", "--bars", "2"),
         first_bar_from_model_a_then_model_b, ("--model", "@b", "--bars", "2")),
    Case("style", ("style",), ("--style", "bach"), style_bach, ()),
    Case("temperature", ("temperature",), ("--temperature", "0.05"), greedy, (), will=ranked),
    Case("top-k", ("top_k",), ("--top-k", "1"), greedy, (), will=ranked),
    Case("top-p", ("top_p",), ("--top-p", "0.01"), greedy, ("--top-p", "1"), will=ranked),
    Case("min-p", ("min_p",), ("--min-p", "0.5"), greedy, (), will=ranked),
    Case("random seed", ("random_seed",), ("--random-seed", "5"), random_seed_5, ()),
    # (two bars: a tiny model's one new bar can hold too few notes to judge a scale by)
    Case("key", ("key",), ("--key", "F:minor", "--bars", "2"), pitches_in(5, "minor"),
         ("--bars", "2")),
    Case("scale", ("scale",), ("--scale", "dorian", "--bars", "2"), pitches_in(11, "dorian"),
         ("--bars", "2")),
    Case("range", ("pitch_range",), ("--range", "C4-C5"), pitches_within(60, 72), ()),
    # two bars: one bar of the tiny model can hold too few notes to judge
    Case("instrument ranges", ("instrument_ranges",), ("--instrument-ranges", "--bars", "2"),
         within_instrument_ranges, ("--no-instrument-ranges", "--bars", "2"),
         will=lambda: pushing(_low_pitch_ids)),
    Case("no instrument ranges", ("instrument_ranges",), ("--no-instrument-ranges",),
         somewhere_outside_instrument_ranges, (), will=lambda: pushing(_low_pitch_ids)),
    Case("max polyphony", ("max_polyphony",), ("--max-polyphony", "1"), one_note_at_a_time, ()),
    Case("instruments", ("instruments",), ("--instruments", "bass"), bass_only, (), seed=BAND),
    Case("lock tempo", ("lock_tempo",), ("--lock-tempo",), changes_after_marker("tempos", False),
         ("--free-tempo",), will=lambda: pushing(lambda: _family_ids("tempo"))),
    Case("free tempo", ("lock_tempo",), ("--free-tempo",), changes_after_marker("tempos", True),
         (), will=lambda: pushing(lambda: _family_ids("tempo"))),
    Case("lock meter", ("lock_meter",), ("--lock-meter",), changes_after_marker("meters", False),
         ("--free-meter",), will=lambda: pushing(lambda: _family_ids("ts"))),
    Case("free meter", ("lock_meter",), ("--free-meter",), changes_after_marker("meters", True),
         (), will=lambda: pushing(lambda: _family_ids("ts"))),
    Case("lock key", ("lock_key",), ("--lock-key",), changes_after_marker("keys", False),
         ("--free-key",), will=lambda: pushing(lambda: _family_ids("key"))),
    Case("free key", ("lock_key",), ("--free-key",), changes_after_marker("keys", True),
         (), will=lambda: pushing(lambda: _family_ids("key"))),
    Case("tempo", ("tempo",), ("--tempo", "90"), starts_at_tempo(90.0), (),
         commands=("generate",), seed=None),
    Case("ts", ("ts",), ("--ts", "3/4"), in_three_four, (), commands=("generate",), seed=None),
    Case("max new tokens", ("max_new_tokens",), ("--max-new-tokens", "3"), refused_for_budget,
         ()),
    Case("retries", ("retries",), ("--retries", "1"), one_retry_then_kept, (),
         will=always_a_copy),
    Case("name", ("name",), ("--name", "tune"), named_tune, (), commands=("generate",)),
    Case("device", ("device",), ("--device", "cpu"), on_the_cpu, None,
         why_no_control="the test machine has one device: no other choice would show"),
    Case("force", ("force",), ("--force",), overwrote_the_stale_file, (), before=stale),
    Case("unisons", ("unisons",), ("--unisons",), some_unisons, (), will=repeating),
    Case("no unisons", ("unisons",), ("--no-unisons",), no_unisons, ("--unisons",),
         will=repeating),
    Case("drum keys gm", ("drum_keys",), ("--instruments", "drums", "--drum-keys", "gm"),
         drums_on_the_gm_kit, ("--instruments", "drums", "--drum-keys", "any"), seed=BAND,
         will=pushing_ids(_off_kit_drum_ids)),
    Case("drum keys seed", ("drum_keys",), ("--instruments", "drums", "--drum-keys", "seed"),
         drums_on_the_seeds_keys, ("--instruments", "drums"), seed=BAND,
         will=pushing_ids(_off_kit_drum_ids)),
    Case("drum length", ("drum_length",), ("--instruments", "drums", "--drum-length", "1/2"),
         drums_of_half_a_quarter, ("--instruments", "drums", "--drum-length", "any"), seed=BAND,
         will=pushing_ids(_long_duration_ids)),
    Case("hold past end", ("hold_past_end",), ("--hold-past-end",), rings_past_the_end, (),
         will=pushing_ids(_long_duration_ids)),
    Case("nothing past the end", ("hold_past_end",), (), nothing_past_the_end,
         ("--hold-past-end",), will=pushing_ids(_long_duration_ids)),
    Case("loop guard", ("loop_guard",), ("--unisons", "--loop-guard", "8"), runs_of_at_most_8,
         ("--unisons", "--loop-guard", "0"), will=repeating),
    Case("chords strict", ("chords", "chord_strict"), ("--chords", "C", "--chord-strict"),
         pitch_classes_only({0, 4, 7}), ()),
    Case("chords from", ("chords_from",), ("--chords-from", "chart.txt", "--chord-strict"),
         pitch_classes_only({2, 5, 9}), (), before=d_minor_chart),
    Case("chord tracks", ("chord_tracks",),
         ("--chords", "C", "--chord-strict", "--chord-tracks", "electric-bass-finger",
          "--bars", "4"),
         bass_in_c_major_triad_the_rest_free, (), seed=BAND),
    Case("adapt", ("adapt",), ("--adapt", "2"), adapted_for_2_steps, ()),
    Case("sustain", ("sustain",), ("--sustain",), held_by_the_pedal, ("--no-sustain",),
         seed=PEDALLED),
    Case("sustain by default", ("sustain",), (), held_by_the_pedal, ("--no-sustain",),
         seed=PEDALLED),
    Case("no sustain", ("sustain",), ("--no-sustain",), released_as_written, (),
         seed=PEDALLED),
)  # fmt: skip


def rows(command: str) -> list:
    return [pytest.param(c, id=c.id) for c in CASES if command in c.commands]


def _run(run: Runner, command: str, case: Case, options: tuple[str, ...]) -> Take:
    return run(command, options, seed=case.seed, will=case.will, before=case.before)


@pytest.mark.parametrize("case", rows("generate"))
def test_generate_applies_the_option(run: Runner, case: Case) -> None:
    case.check(_run(run, "generate", case, case.options))


@pytest.mark.parametrize("case", rows("continue"))
def test_continue_applies_the_option(run: Runner, case: Case) -> None:
    case.check(_run(run, "continue", case, case.options))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if c.control is not None])
def test_each_check_fails_without_its_option(run: Runner, case: Case) -> None:
    """The check rejects the control's output: a command that dropped the option fails."""
    control = _run(run, case.commands[0], case, case.control)
    with pytest.raises(AssertionError):
        case.check(control)


def test_every_option_of_both_commands_has_a_row() -> None:
    """A new option without an end-to-end row fails here, as does a row for an option gone."""
    commands = typer.main.get_command(app).commands
    for command in ("generate", "continue"):
        options = {p.name for p in commands[command].params}
        covered = {name for c in CASES if command in c.commands for name in c.covers}
        assert options - covered == set(), f"{command}: options without a row"
        assert covered - options <= {"seed", "source"}, f"{command}: rows for no option"
    uncontrolled = [c.id for c in CASES if c.control is None]
    assert all(c.why_no_control for c in CASES if c.control is None), uncontrolled
