"""The page's model of one browser session: the seed, the takes, undo, and the generation
that runs in the background. No Streamlit here: app.py draws what this module holds, and
the tests drive it directly.

A *seed* is a header and whole bars (token ids, no `end`). A *take* is one variant of one
generation (or an edit of a take): the whole piece, its files and its audio. Every change
the user can undo (a new run, "continue from this", a saved edit) records a snapshot of
what the page showed before it.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from music_lm.errors import MusicLmError
from music_lm.midi.score import Score
from music_lm.tokens.grammar import GrammarError, validate, words_to_ids
from music_lm.tokens.vocab import VOCAB

BAR = VOCAB.ids["bar"]
END = VOCAB.ids["end"]


class SeedError(MusicLmError, ValueError):
    """A seed the page cannot use; the message names the file and the problem."""


@dataclass(frozen=True)
class PageLimits:
    """What one upload or one generation on the page may take."""

    upload_bytes: int = 5 * 1024 * 1024  # also server.maxUploadSize in .streamlit/config.toml
    seed_tokens: int = 60_000  # a long orchestral file; more would not fit any context anyway
    seed_bars: int = 512
    generation_seconds: float = 300.0  # the sampling of one generation, all its variants
    concurrent_generations: int = 1  # over all sessions; the others wait their turn
    attention_bars: int = 16  # attention kept: [layers, heads, new, all tokens] grows fast


LIMITS = PageLimits()


# ---- seeds ----


@dataclass(frozen=True)
class Seed:
    """Where a continuation starts: the header and whole bars, as token ids."""

    name: str  # the file, "settings" or the take's label
    ids: tuple[int, ...]
    origin: str  # "example", "upload", "settings" or "take"
    take: int | None = None  # the take's number when origin is "take"

    @property
    def bars(self) -> int:
        return self.ids.count(BAR)

    @property
    def text(self) -> str:
        """The seed as a whole piece (with its `end`), one bar a line."""
        words = [VOCAB.tokens[t] for t in (*self.ids, END)]
        return " ".join(words).replace(" bar ", "\nbar ")

    def cut(self, bars: int) -> Seed:
        """The header and the first `bars` bars."""
        starts = [i for i, t in enumerate(self.ids) if t == BAR]
        if bars >= len(starts):
            return self
        return replace(self, ids=self.ids[: starts[bars]])

    @cached_property
    def score(self) -> Score:
        """The seed as a score (a header alone: tracks without notes)."""
        from music_lm.tokens.codec import decode

        return decode(" ".join(VOCAB.tokens[t] for t in self.ids), partial=True)


def _seed_ids(text: str, name: str) -> tuple[int, ...]:
    from music_lm.generation.runner import GenerationError, seed_from_text

    try:
        return tuple(seed_from_text(text, name))
    except GenerationError as err:
        raise SeedError(str(err)) from None


def seed_from_midi(
    data: bytes, name: str, origin: str = "upload", limits: PageLimits = LIMITS
) -> Seed:
    """The seed of a MIDI file's bytes; SeedError names the file and what is wrong."""
    from music_lm.api import encode_midi

    if len(data) > limits.upload_bytes:
        raise SeedError(
            f"{name}: {len(data):,} bytes is over the limit of {limits.upload_bytes:,} bytes"
        )
    try:
        encoded = encode_midi(data, name=name)
    except (ValueError, OSError) as err:  # MidiError and CodecError are ValueErrors
        message = str(err)
        raise SeedError(message if name in message else f"{name}: {message}") from None
    if encoded.token_count > limits.seed_tokens:
        raise SeedError(
            f"{name}: {encoded.token_count:,} tokens is over the page's limit of "
            f"{limits.seed_tokens:,}; cut the file or use `music-lm continue`"
        )
    # A file with no notes (tempo and meter only) is continued from its header, with the
    # instruments a piece started from settings gets (`generate` adds them; see
    # music_lm.generation.runner.with_instruments).
    seed = Seed(name, _seed_ids(encoded.text, name), origin)
    if seed.bars > limits.seed_bars:
        raise SeedError(f"{name}: {seed.bars} bars is over the page's limit of {limits.seed_bars}")
    return seed


def seed_from_header(header) -> Seed:
    """A seed of a header only (`music_lm.generation.runner.Header`): start from settings."""
    return Seed("settings", tuple(words_to_ids(header.words())), "settings")


def seed_summary(seed: Seed) -> dict:
    """Tracks, tempo, meter, key, bars, notes and length of a seed, for the page."""
    from music_lm.tokens.report import seconds

    score = seed.score
    first = score.time_signatures[0] if score.time_signatures else None
    key = score.key_signatures[0] if score.key_signatures else None
    return {
        "tracks": [
            "drums" if t.is_drum else t.instrument_name.replace("-", " ") for t in score.tracks
        ],
        "tempo_bpm": round(score.tempos[0].bpm, 2) if score.tempos else 120.0,
        "meter": f"{first.numerator}/{first.denominator}" if first else "4/4",
        "key": str(key) if key else "none",
        "bars": seed.bars,
        "notes": score.note_count,
        "seconds": round(seconds(score, score.end_tick), 1),
        "style": score.style,
    }


# ---- takes ----


@dataclass(eq=False)  # a take is itself (its arrays do not compare)
class Take:
    """One piece the session made: a variant of a run, or an edit of a take."""

    number: int  # 1, 2, ... in the order the session made them
    run: int  # the run that made it (edits keep their take's run)
    variant: int
    ids: tuple[int, ...]  # the whole piece, `end` included
    seed_length: int
    continuation_tick: int  # grid tick where the new bars start
    continuation_bar: int
    record: dict  # the settings JSON (what `variant_files` writes)
    files: dict[str, bytes]  # ".mid", ".txt", ".json"
    parent: int | None = None  # the take it continued or edited
    edited: bool = False
    attention: np.ndarray | None = None  # [layers, heads, new tokens, tokens] when kept
    wav: bytes | None = None
    audio_error: str | None = None

    @property
    def random_seed(self) -> int | None:
        return self.record.get("random_seed")

    @property
    def label(self) -> str:
        how = "edit" if self.edited else f"run {self.run}, variant {self.variant}"
        seed = "" if self.random_seed is None else f", seed {self.random_seed}"
        return f"Take {self.number} ({how}{seed})"

    @property
    def stem(self) -> str:
        return f"take-{self.number}"

    @property
    def text(self) -> str:
        return self.files[".txt"].decode("utf-8")

    @cached_property
    def score(self) -> Score:
        from music_lm.tokens.codec import decode

        return decode(self.text)

    @cached_property
    def daw_midi(self) -> bytes:
        """The DAW-ready export (made once: the page shows it on every rerun)."""
        from music_lm.render.export import export_midi

        return export_midi(self.files[".mid"], name=f"{self.stem}.mid")[0]

    def musicxml(self) -> bytes:
        """MusicXML of the DAW export; music21 takes a while, so only when downloaded."""
        from music_lm.render.export import musicxml

        return musicxml(self.daw_midi, f"{self.stem}.mid")


def render_wav(midi: bytes, name: str) -> bytes:
    """WAV bytes of a MIDI file (FluidSynth, the GM soundfont); AudioError says why not."""
    from music_lm.render.audio import encode_audio, render_midi

    return encode_audio(render_midi(midi, name=name), "wav")


def takes_of(generation, first_number: int, run: int, parent: int | None) -> list[Take]:
    """The takes of a finished generation, numbered from `first_number`."""
    from music_lm.generation.runner import variant_files

    takes = []
    for offset, variant in enumerate(generation.variants):
        number = first_number + offset
        files = variant_files(generation, variant, "take")
        # The page names its files after the take ("take-7.mid"), not the variant.
        record = {**json.loads(files[".json"]), "file": f"take-{number}", "take": number,
                  "tokens_per_s": round(generation.tokens_per_s, 1)}  # fmt: skip
        files[".json"] = (json.dumps(record, indent=2) + "\n").encode("utf-8")
        takes.append(
            Take(
                number=number,
                run=run,
                variant=variant.index,
                ids=tuple(variant.ids),
                seed_length=variant.seed_length,
                continuation_tick=variant.continuation_tick,
                continuation_bar=variant.continuation_bar,
                record=record,
                files=files,
                parent=parent,
                attention=variant.attention,
            )
        )
    return takes


def edited_take(take: Take, text: str, number: int) -> Take:
    """A new take of edited token text; GrammarError names the first bad token. The
    continuation stays marked when the edit left the seed's tokens as they were."""
    from music_lm.midi.io import write_midi
    from music_lm.tokens.codec import decode, encode

    score = decode(text)  # GrammarError names the first bad token
    ids = words_to_ids(text.split())
    canonical = encode(score)  # the text as the codec writes it
    # An edit whose seed was changed has no continuation left to mark (seed_length 0).
    kept = take.seed_length > 0 and tuple(ids[: take.seed_length]) == take.ids[: take.seed_length]
    # What described the sampling of a variant no longer describes an edit of it.
    stale = ("new_tokens", "retries", "post_check", "seconds", "continuation_bar",
             "continuation_beat")  # fmt: skip
    record = {k: v for k, v in take.record.items() if k not in stale}
    record.update({"file": f"take-{number}", "take": number, "edited_from": take.number,
                   "notes": score.note_count})  # fmt: skip
    if kept:
        record["continuation_bar"] = take.continuation_bar
        record["continuation_beat"] = take.record.get("continuation_beat")
    markers = [(take.continuation_tick, "music_lm continuation")] if kept else []
    files = {
        ".mid": write_midi(score, markers=markers),
        ".txt": canonical.encode("utf-8"),
        ".json": (json.dumps(record, indent=2) + "\n").encode("utf-8"),
    }
    return Take(
        number=number,
        run=take.run,
        variant=take.variant,
        ids=tuple(ids),
        seed_length=take.seed_length if kept else 0,
        continuation_tick=take.continuation_tick if kept else 0,
        continuation_bar=take.continuation_bar if kept else 1,
        record=record,
        files=files,
        parent=take.number,
        edited=True,
    )


def check_text(text: str) -> str | None:
    """None when `text` is one valid piece, else the grammar's message (it names the token,
    its index and what was expected there)."""
    try:
        validate(text)
    except GrammarError as err:
        return str(err)
    return None


# ---- the history ----


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


# ---- the background job ----


class GenerationQueue:
    """First come, first served: at most `slots` generations run at once over all sessions
    (each uses every core, so more at once would only make each slower) and the others wait
    in line. A waiting job blocks on a condition, never in a polling loop that would take
    the GIL from the generating one; it leaves the line as soon as it is stopped, or when its
    browser session is gone (`alive()` answers False: asked once a second while it waits).

    The page reads `place(job)` ("2nd in line") and `wait_estimate_s(job)`, from the work
    queued ahead (bars × variants) at the speed of the recent generations.
    """

    DEFAULT_SECONDS_PER_BAR = 0.5  # one variant-bar of the shipped model on two cores
    ALIVE_CHECK_S = 1.0

    def __init__(self, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError(f"a queue needs at least one slot, got {slots}")
        self.slots = slots
        self._condition = threading.Condition()
        self._waiting: deque[GenerationJob] = deque()
        self._running: list[GenerationJob] = []
        self._seconds_per_bar: deque[float] = deque(maxlen=8)  # of the recent generations

    def enter(self, job: GenerationJob) -> bool:
        """Wait for a slot; True once `job` holds one, False when it left the line first
        (stopped, or its session gone). A job that got a slot must `leave` it."""
        with self._condition:
            self._waiting.append(job)
            self._condition.notify_all()
            try:
                while True:
                    if job.stop_requested:  # Stop pressed, or its session gone
                        return False
                    if self._waiting[0] is job and len(self._running) < self.slots:
                        self._running.append(job)
                        return True
                    self._condition.wait(self.ALIVE_CHECK_S)
            finally:
                self._waiting.remove(job)
                self._condition.notify_all()

    def leave(self, job: GenerationJob, seconds: float | None = None) -> None:
        """Free `job`'s slot; `seconds` (its sampling and rendering) teaches the estimate."""
        with self._condition:
            if job in self._running:
                self._running.remove(job)
            if seconds is not None and job.work_bars > 0:
                self._seconds_per_bar.append(seconds / job.work_bars)
            self._condition.notify_all()

    def wake(self) -> None:
        """Let the waiting jobs look again (one of them was stopped)."""
        with self._condition:
            self._condition.notify_all()

    def place(self, job: GenerationJob) -> int | None:
        """1 for the next in line, 2 behind it, ...; None when not waiting."""
        with self._condition:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return None

    @property
    def seconds_per_bar(self) -> float:
        if not self._seconds_per_bar:
            return self.DEFAULT_SECONDS_PER_BAR
        return statistics.median(self._seconds_per_bar)

    def wait_estimate_s(self, job: GenerationJob) -> float | None:
        """Seconds until `job` may start: what the running jobs have left plus the work of
        those ahead of it in line, spread over the slots. None when it is not waiting."""
        with self._condition:
            if job not in self._waiting:
                return None
            per_bar = self.seconds_per_bar
            now = time.monotonic()
            left = [
                max(r.work_bars * per_bar - (now - (r.started or now)), 0.5) for r in self._running
            ]
            ahead = self._waiting.index(job)
            work = sum(j.work_bars for j in list(self._waiting)[:ahead]) * per_bar
            return (sum(left) + work) / self.slots

    @property
    def waiting(self) -> int:
        with self._condition:
            return len(self._waiting)


class GenerationJob:
    """One generation on a worker thread, so the page stays responsive and a widget change
    (which re-runs the script) never aborts it. It first waits its turn in `queue` (default:
    the process's QUEUE). The page polls `progress`/`done`; Stop sets an event that
    `generate` checks after every step. `alive` answers whether the browser session that
    asked for it is still there: when it is not, the job leaves the line or stops."""

    def __init__(
        self,
        work: Callable[..., list[Take]],
        *,
        queue: GenerationQueue | None = None,
        alive: Callable[[], bool] | None = None,
        **kwargs,
    ) -> None:
        self._stop = threading.Event()
        self.queue = queue or QUEUE
        self.alive = alive or (lambda: True)
        constraints = kwargs.get("constraints")
        self.work_bars = getattr(constraints, "bars", 4) * int(kwargs.get("variants", 1))
        self.progress = None  # music_lm.generation.runner.Progress of the last step
        self.stage = "waiting"
        self.takes: list[Take] | None = None
        self.error: str | None = None
        self.stopped = False
        self.started: float | None = None  # when it got its slot
        self.finished: float | None = None
        self._thread = threading.Thread(
            target=self._run, args=(work, kwargs), name="music_lm-generation", daemon=True
        )
        self._thread.start()

    def _run(self, work: Callable[..., list[Take]], kwargs: dict) -> None:
        from music_lm.generation.runner import GenerationStoppedError

        slot = False
        try:
            slot = self.queue.enter(self)
            if not slot:
                why = "stopped" if self._stop.is_set() else "the page was closed"
                raise GenerationStoppedError(f"{why} before it started")
            self.started = time.monotonic()
            self.stage = "generating"
            self.takes = work(job=self, **kwargs)
        except GenerationStoppedError as err:
            self.stopped, self.error = True, str(err)
        except Exception as err:  # the page shows every failure as one line
            self.error = str(err) or type(err).__name__
        finally:
            self.finished = time.monotonic()
            if slot:
                spent = self.finished - self.started if self.takes is not None else None
                self.queue.leave(self, spent)

    def report(self, progress) -> None:
        self.progress = progress

    def stop(self) -> None:
        self._stop.set()
        self.queue.wake()

    @property
    def stop_requested(self) -> bool:
        """Stop was pressed, or the session that asked for the job is gone."""
        return self._stop.is_set() or not self.alive()

    @property
    def place(self) -> int | None:
        """Its place in line while it waits (1: next), else None."""
        return self.queue.place(self)

    @property
    def wait_estimate_s(self) -> float | None:
        return self.queue.wait_estimate_s(self)

    @property
    def can_stop(self) -> bool:
        """Stop works while it waits or draws tokens (the renders after them are quick)."""
        return not self.done and not self.stop_requested and self.stage != "rendering the audio"

    @property
    def done(self) -> bool:
        return self.finished is not None

    def wait(self, timeout_s: float | None = None) -> bool:
        self._thread.join(timeout_s)
        return self.done


# The process's one line of generations, shared by every session of the page.
QUEUE = GenerationQueue(LIMITS.concurrent_generations)


def generate_takes(
    job: GenerationJob,
    seed: Seed,
    first_number: int,
    run: int,
    parent: int | None,
    limits: PageLimits | None = None,
    **options,
) -> list[Take]:
    """The work of a page generation: `generate` with the job's progress, Stop and time
    limit, then the takes and their audio. `options` go to `generate` as they are."""
    from music_lm.generation.runner import generate
    from music_lm.render.audio import AudioError

    generation = generate(
        list(seed.ids),
        progress=job.report,
        stop=lambda: job.stop_requested,
        time_limit_s=(limits or LIMITS).generation_seconds,
        **options,
    )
    takes = takes_of(generation, first_number, run, parent)
    job.stage = "rendering the audio"
    for take in takes:
        try:
            take.wav = render_wav(take.files[".mid"], f"{take.stem}.mid")
        except AudioError as err:  # no soundfont: the page still shows the rest
            take.audio_error = str(err)
    return takes


# ---- the process ----

_WARM_UP = threading.Lock()
_warmed = False


def warm_up() -> None:
    """Import, once and on one thread, everything heavy the page's threads use, before any
    session draws. Streamlit runs each session's script on a thread of its own, and Plotly
    imports pandas lazily when it builds its first figure: three sessions doing that at once
    on a cold server crashed on a partly imported pandas. Later calls return at once."""
    global _warmed
    with _WARM_UP:
        if _warmed:
            return
        import matplotlib

        matplotlib.use("Agg")  # no display on a server; set before pyplot is imported
        import matplotlib.pyplot
        import pandas  # noqa: F401
        import plotly.graph_objects as go
        import plotly.io
        import pyarrow  # noqa: F401  (st.dataframe)
        import torch  # noqa: F401
        import transformers  # noqa: F401
        from transformers import GPT2LMHeadModel  # noqa: F401  (transformers' lazy modules)

        # A figure through the same path st.plotly_chart takes, so that Plotly's own lazy
        # imports (its validators, pandas' extension types) happen here too.
        plotly.io.to_json(go.Figure(go.Scatter(x=[0, 1], y=[0, 1])), validate=True)
        _warmed = True


# ---- models and runs ----


@dataclass(frozen=True)
class ModelChoice:
    label: str
    path: str  # "default" or a folder


def model_choices(roots: Sequence[Path]) -> list[ModelChoice]:
    """The shipped model, then every model folder (a run and its checkpoints) under `roots`."""
    from music_lm.model.folder import META_FILE

    choices = [ModelChoice("default (shipped)", "default")]
    for root in roots:
        if not root.is_dir():
            continue
        for meta in sorted(root.glob(f"*/{META_FILE}")) + sorted(root.glob(f"*/*/{META_FILE}")):
            folder = meta.parent
            choices.append(ModelChoice(str(folder.relative_to(root.parent)), str(folder)))
    return choices


def run_metrics(path: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (a checkpoint reads its run's); [] when none."""
    from music_lm.model.folder import resolve_model_path

    folder = Path(resolve_model_path(path))
    for candidate in (folder, folder.parent):
        file = candidate / "metrics.jsonl"
        if file.is_file():
            rows = []
            for line in file.read_text(encoding="utf-8").splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # a line cut by a kill
            return rows
    return []


__all__ = [
    "LIMITS",
    "QUEUE",
    "GenerationJob",
    "GenerationQueue",
    "History",
    "ModelChoice",
    "PageLimits",
    "Seed",
    "SeedError",
    "Snapshot",
    "Take",
    "check_text",
    "edited_take",
    "generate_takes",
    "model_choices",
    "render_wav",
    "run_metrics",
    "seed_from_header",
    "seed_from_midi",
    "seed_summary",
    "takes_of",
    "warm_up",
]
