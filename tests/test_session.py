"""The page's session model without the page: seeds, takes, undo and the background job."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from music_lm.generation.constraints import Constraints
from music_lm.generation.runner import generate
from music_lm.generation.seeds import Header
from music_lm.generation.settings import GenerationError, GenerationStoppedError, Progress
from music_lm.page.history import History
from music_lm.page.jobs import GenerationJob, GenerationQueue, generate_takes
from music_lm.page.limits import PageLimits
from music_lm.page.models import model_choices, run_metrics
from music_lm.page.seeds import Seed, SeedError, seed_from_header, seed_from_midi, seed_summary
from music_lm.page.takes import check_text, edited_take, takes_of
from music_lm.tokens.vocab import VOCAB

ROOT = Path(__file__).resolve().parents[1]
CHORALE = (ROOT / "midi_in" / "bach_chorale.mid").read_bytes()


# ---- seeds ----


def test_a_midi_seed_is_a_header_and_whole_bars_and_cuts_at_a_bar() -> None:
    seed = seed_from_midi(CHORALE, "bach_chorale.mid", "example")
    assert seed.bars > 4
    cut = seed.cut(4)
    assert cut.bars == 4
    assert cut.ids == seed.ids[: len(cut.ids)]
    assert cut.text.endswith("end")
    assert seed.cut(0).bars == 0
    assert seed.cut(10_000) is seed


def test_a_seed_summary_reads_the_header() -> None:
    summary = seed_summary(seed_from_midi(CHORALE, "bach_chorale.mid").cut(4))
    assert summary["tracks"] == ["flute", "oboe", "clarinet", "bassoon"]
    assert summary["meter"] == "4/4"
    assert summary["key"] == "F# minor"
    assert summary["bars"] == 4
    assert summary["tempo_bpm"] == 96


def test_a_header_alone_is_a_seed_without_notes() -> None:
    seed = seed_from_header(Header(tempo_bpm=90, time_signature=(6, 8), programs=(73, -1)))
    summary = seed_summary(seed)
    assert summary["bars"] == 0
    assert summary["notes"] == 0
    assert summary["meter"] == "6/8"
    assert summary["tracks"] == ["flute", "drums"]


@pytest.mark.parametrize(
    ("data", "limits", "problem"),
    [
        (b"", PageLimits(), "mine.mid: "),
        (b"not a midi file at all", PageLimits(), "mine.mid: "),
        (CHORALE, PageLimits(upload_bytes=100), "over the limit of 100 bytes"),
        (CHORALE, PageLimits(seed_tokens=50), "over the page's limit of 50"),
        (CHORALE, PageLimits(seed_bars=3), "bars is over the page's limit of 3"),
    ],
    ids=["empty", "text", "too big", "too many tokens", "too many bars"],
)
def test_a_bad_or_oversized_upload_names_the_file(data: bytes, limits, problem: str) -> None:
    with pytest.raises(SeedError) as caught:
        seed_from_midi(data, "mine.mid", limits=limits)
    message = str(caught.value)
    assert message.startswith("mine.mid: ")
    assert problem in message
    assert "\n" not in message


def test_a_midi_file_without_notes_is_continued_from_its_header(make_midi, tiny_model) -> None:
    import mido

    header = [
        (0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90))),
        (0, mido.MetaMessage("time_signature", numerator=3, denominator=4)),
        (960, mido.MetaMessage("end_of_track")),
    ]
    seed = seed_from_midi(make_midi(header), "mine.mid")
    assert (seed.bars, seed_summary(seed)["notes"]) == (0, 0)
    made = generate(list(seed.ids), constraints=Constraints(bars=2), models=[tiny_model],
                    random_seed=3)  # fmt: skip
    words = " ".join(VOCAB.tokens[t] for t in made.variants[0].ids).split()
    assert words[:5] == ["piece", "style:none", "tempo:90", "ts:3/4", "inst:acoustic-grand-piano"]
    assert words.count("bar") == 2


# ---- generating takes ----


@pytest.fixture(scope="module")
def generation(tiny_model: Path):
    seed = seed_from_midi(CHORALE, "bach_chorale.mid").cut(2)
    made = generate(list(seed.ids), constraints=Constraints(bars=1), models=[tiny_model],
                    variants=2, random_seed=5)  # fmt: skip
    return seed, made


def test_takes_carry_their_files_and_settings(generation) -> None:
    seed, made = generation
    takes = takes_of(made, first_number=7, run=3, parent=None)
    assert [t.number for t in takes] == [7, 8]
    assert [t.variant for t in takes] == [1, 2]
    for take in takes:
        assert take.files[".mid"][:4] == b"MThd"
        assert json.loads(take.files[".json"])["file"] == f"take-{take.number}"
        assert take.text == made.variants[take.variant - 1].text
        assert take.label.startswith(f"Take {take.number} (run 3, variant {take.variant}, seed 5")
        assert take.ids[: len(seed.ids)] == seed.ids


def test_an_edit_keeps_the_continuation_mark_when_the_seed_is_untouched(generation) -> None:
    _seed, made = generation
    take = takes_of(made, 1, 1, None)[0]
    words = take.text.split()
    last_bar = max(i for i, w in enumerate(words) if w == "bar")
    assert last_bar >= take.seed_length  # the new bar
    changed = " ".join([*words[:last_bar], "bar", "@0", "t1", "d:1", "v:64", "C5", "end"])
    edit = edited_take(take, changed, number=5)
    assert edit.edited
    assert (edit.parent, edit.number) == (take.number, 5)
    assert edit.continuation_tick == take.continuation_tick
    assert b"music_lm continuation" in edit.files[".mid"]
    header, rest = take.text.split("\n", 1)
    new_header = header.replace(header.split()[2], "tempo:60")
    moved = edited_take(take, new_header + "\n" + rest, number=6)
    assert moved.seed_length == 0  # the seed was edited: no continuation to mark
    assert b"music_lm continuation" not in moved.files[".mid"]


def test_check_text_names_the_token_and_what_was_expected() -> None:
    assert (
        check_text("piece style:none tempo:120 ts:4/4 inst:flute bar @0 t1 d:1 v:80 C4 end") is None
    )
    problem = check_text("piece style:none tempo:120 ts:4/4 inst:flute bar C4 end")
    assert problem is not None
    assert problem.startswith("token 6 'C4': ")
    assert "expected" in problem


# ---- the history ----


def _take(number: int):
    from music_lm.page.takes import Take

    ids = (1, 2, 3)
    return Take(number, 1, 1, ids, 1, 0, 1, {}, {".txt": b"x"})


def test_undo_walks_back_through_runs_continues_and_edits() -> None:
    history = History()
    history.add_run([_take(1), _take(2)])
    seed = history.continue_from(2)
    assert seed.origin == "take"
    assert seed.take == 2
    assert history.seed == seed
    history.add_run([_take(3)])
    history.add_edit(_take(4))
    assert history.shown == (4,)
    history.undo()
    assert history.shown == (3,)
    history.undo()
    assert history.shown == (1, 2)
    assert history.seed == seed
    history.undo()
    assert history.seed is None
    history.undo()
    assert history.shown == ()
    assert not history.can_undo
    history.undo()  # nothing left: a no-op
    assert sorted(history.takes) == [1, 2, 3, 4]  # undo hides, never deletes


def test_take_numbers_reserved_by_a_running_job_are_not_given_twice() -> None:
    history = History()
    first = history.reserve(4)
    assert first == 1
    assert history.reserve(1) == 5  # an edit saved while the job runs
    history.add_run([_take(n) for n in range(1, 5)])
    assert history.reserve(1) == 6


# ---- the background job ----


def test_a_job_runs_in_the_background_and_reports_progress(tiny_model: Path) -> None:
    seed = seed_from_midi(CHORALE, "bach_chorale.mid").cut(2)
    job = GenerationJob(generate_takes, seed=seed, first_number=1, run=1, parent=None,
                        models=[tiny_model], constraints=Constraints(bars=2), variants=2,
                        random_seed=3)  # fmt: skip
    assert job.wait(120)
    assert job.error is None
    assert [t.number for t in job.takes] == [1, 2]
    assert isinstance(job.progress, Progress)
    assert job.progress.bars_done == job.progress.bars == 2
    assert all(t.wav[:4] == b"RIFF" for t in job.takes)


def test_stop_ends_a_job_with_a_message(tiny_model: Path) -> None:
    seed = seed_from_midi(CHORALE, "bach_chorale.mid").cut(2)
    job = GenerationJob(
        generate_takes, seed=seed, first_number=1, run=1, parent=None,
        models=[tiny_model], constraints=Constraints(bars=200), variants=4,
    )  # fmt: skip
    while job.progress is None and not job.done:
        time.sleep(0.01)
    job.stop()
    assert job.wait(60)
    assert job.stopped
    assert job.takes is None
    assert job.error.startswith("stopped after ")


def test_a_failing_job_keeps_one_line() -> None:
    seed = Seed("x", (), "upload")
    job = GenerationJob(generate_takes, seed=seed, first_number=1, run=1, parent=None,
                        models=["/no/such/model"])  # fmt: skip
    assert job.wait(60)
    assert job.takes is None
    assert not job.stopped
    assert "\n" not in job.error


def _held_work(release: threading.Event, order: list[int]):
    """Work that records its start and holds its slot until `release` is set."""

    def work(job, tag: int, constraints=None, variants: int = 1) -> list:
        order.append(tag)
        assert release.wait(30)
        return []

    return work


def _wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_the_queue_runs_jobs_in_order_and_says_where_each_stands() -> None:
    queue, order, release = GenerationQueue(slots=1), [], threading.Event()
    work = _held_work(release, order)
    first = GenerationJob(work, queue=queue, tag=1, constraints=Constraints(bars=8), variants=2)
    _wait_until(lambda: order == [1])
    second = GenerationJob(work, queue=queue, tag=2, constraints=Constraints(bars=4))
    _wait_until(lambda: second.place == 1)
    third = GenerationJob(work, queue=queue, tag=3, constraints=Constraints(bars=4))
    _wait_until(lambda: third.place == 2)
    assert (first.place, second.place, third.place) == (None, 1, 2)
    per_bar = queue.seconds_per_bar  # nothing finished yet: the default
    assert second.wait_estimate_s == pytest.approx(16 * per_bar, abs=0.2)  # first's 8 × 2 left
    assert third.wait_estimate_s == pytest.approx((16 + 4) * per_bar, abs=0.2)
    release.set()
    for job in (first, second, third):
        assert job.wait(30)
        assert job.error is None
    assert order == [1, 2, 3]  # first come, first served


def test_stop_or_a_closed_page_leaves_the_line_at_once() -> None:
    queue, order, release = GenerationQueue(slots=1), [], threading.Event()
    work = _held_work(release, order)
    running = GenerationJob(work, queue=queue, tag=1)
    _wait_until(lambda: order == [1])
    assert running.stage == "generating"
    session_open = threading.Event()
    session_open.set()
    stopped = GenerationJob(work, queue=queue, tag=2)
    closed = GenerationJob(work, queue=queue, tag=3, alive=session_open.is_set)
    last = GenerationJob(work, queue=queue, tag=4)
    _wait_until(lambda: last.place == 3)
    stopped.stop()
    assert stopped.wait(5)
    assert (stopped.stopped, stopped.error) == (True, "stopped before it started")
    assert (closed.place, last.place) == (1, 2)
    session_open.clear()  # its tab closed: noticed within a second
    assert closed.wait(5)
    assert (closed.stopped, closed.error) == (True, "the page was closed before it started")
    assert last.place == 1
    release.set()
    assert last.wait(30)
    assert order == [1, 4]
    assert queue.waiting == 0


def test_a_queue_has_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot, got 0"):
        GenerationQueue(slots=0)


def test_generate_stops_when_asked_and_at_its_time_limit(tiny_model: Path) -> None:
    seed = seed_from_midi(CHORALE, "bach_chorale.mid").cut(2)
    seen: list[Progress] = []
    with pytest.raises(GenerationStoppedError, match="stopped after 3 new tokens"):
        generate(list(seed.ids), models=[tiny_model], progress=seen.append,
                 stop=lambda: len(seen) >= 3)  # fmt: skip
    assert [p.tokens for p in seen] == [1, 2, 3]
    with pytest.raises(GenerationError, match="ran past its limit of 1e-06 s"):
        generate(list(seed.ids), models=[tiny_model], time_limit_s=1e-6)
    with pytest.raises(GenerationError, match="must be positive"):
        generate(list(seed.ids), models=[tiny_model], time_limit_s=0)


# ---- models and runs ----


def test_model_choices_list_runs_and_their_checkpoints(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_model, runs / "a")
    shutil.copytree(tiny_model, runs / "a" / "checkpoint-10")
    (runs / "not-a-model").mkdir()
    labels = [c.label for c in model_choices([runs, tmp_path / "missing"])]
    assert labels == ["default (shipped)", "runs/a", "runs/a/checkpoint-10"]


def test_run_metrics_skip_a_line_cut_by_a_kill(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model, run)
    shutil.copytree(tiny_model, run / "checkpoint-10")
    (run / "metrics.jsonl").write_text('{"step": 10, "train_loss": 2.0}\n{"step": 2')
    assert run_metrics(run) == [{"step": 10, "train_loss": 2.0}]
    assert run_metrics(run / "checkpoint-10") == [{"step": 10, "train_loss": 2.0}]
    assert run_metrics(tiny_model) == []
