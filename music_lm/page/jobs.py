"""Generations in the background: the process's one line of them over all sessions
(`GenerationQueue`, `QUEUE`), one generation on a worker thread (`GenerationJob`), and the
work a page generation does there (`generate_takes`: sampling, takes, their audio).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

from music_lm.page.limits import LIMITS, PageLimits
from music_lm.page.seeds import Seed
from music_lm.page.takes import Take, render_audio, takes_of


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
        # an adaptation step costs about a third of a variant-bar (bench/RESULTS.md)
        self.work_bars += int(kwargs.get("adapt") or 0) * len(kwargs.get("models") or [1]) / 3
        self.progress = None  # music_lm.generation.settings.Progress of the last step
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
        # on use: only the job's own thread needs it
        from music_lm.generation.settings import GenerationStoppedError

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
    # on use: the runner imports torch (seconds); this module imports without it
    from music_lm.generation.runner import generate

    generation = generate(
        list(seed.ids),
        progress=job.report,
        stop=lambda: job.stop_requested,
        time_limit_s=(limits or LIMITS).generation_seconds,
        **options,
    )
    takes = takes_of(generation, first_number, run, parent)
    job.stage = "rendering the audio"
    render_audio(takes)
    return takes


__all__ = [
    "QUEUE",
    "GenerationJob",
    "GenerationQueue",
    "generate_takes",
]
