"""Training on several processes: two CPU processes over gloo run one run, as
docs/training.md ("Several GPUs and nodes") launches them with torchrun and with
`accelerate launch`. Each process draws its own windows, the gradients are averaged, the
weights stay the same on both, the losses are those of one process with the same global
batch, only the main process writes, and a killed launch resumes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from distributed_probe import PROBE_DIR, digest

from music_lm.corpus.dataset import Corpus
from music_lm.training import data
from music_lm.training.checkpoints import checkpoints
from music_lm.training.config import TrainConfig, TrainError
from music_lm.training.loop import train

TESTS = Path(__file__).parent
DOCS = TESTS.parent / "docs" / "training.md"
BIN = Path(sys.executable).parent  # torchrun and accelerate, as a user's PATH finds them
LAUNCH_TIMEOUT_S = 120

# The launches of docs/training.md ("Several GPUs and nodes") for two CPU processes.
TORCHRUN = ["torchrun", "--standalone", "--nproc_per_node", "2"]
ACCELERATE = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2",
              "--main_process_port", "0"]  # fmt: skip
MODULE = ["-m", "music_lm.cli", "train"]

# The run of both tests: the tiny preset, a few steps; per process 2 windows of 64 tokens.
PER_PROCESS_BATCH = 2
SETTINGS = ["--preset", "tiny", "--context", "64", "--batch-size", str(PER_PROCESS_BATCH)]
PROBE_STEPS = 6  # evaluated at 3 and 6, checkpoints at 3 and 6
PROBE_SETTINGS = [*SETTINGS, "--max-steps", str(PROBE_STEPS), "--eval-every", "3",
                  "--save-every", "3", "--log-every", "1", "--eval-windows", "0"]  # fmt: skip


def environment(tmp_path: Path) -> dict[str, str]:
    """The launchers on PATH; Accelerate's settings in the test's own folder (no config
    file of the machine's); one thread per process, as torchrun sets for several."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HOME"] = str(tmp_path / "hf")
    env["OMP_NUM_THREADS"] = "1"
    return env


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def finish(process: subprocess.Popen, log: Path) -> str:
    try:
        process.wait(timeout=LAUNCH_TIMEOUT_S)
    finally:
        stop([process.pid])
    text = log.read_text(errors="replace")
    assert process.returncode == 0, text[-3000:]
    return text


def stop(pids: list[int]) -> None:
    """Kill what is left of a launch: the launcher's group and the processes given."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_processes(tiny_corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documented torchrun command for two CPU processes, with each process recording,
    step by step, the windows it drew and its weights (tests/distributed_probe.py)."""
    tmp = tmp_path_factory.mktemp("two")
    (tmp / "probe").mkdir()
    run = tmp / "run"
    env = environment(tmp) | {PROBE_DIR: str(tmp / "probe")}
    # The documented command, with the probe script in place of `-m music_lm.cli`.
    data = ["--data", str(tiny_corpus.folder), "--output", str(run)]
    command = [*TORCHRUN, str(TESTS / "distributed_probe.py"), "train", *data, *PROBE_SETTINGS]
    text = finish(start(command, env, tmp / "log"), tmp / "log")
    (tmp / "output.txt").write_text(text)
    return tmp


def probe(two: Path, rank: int) -> list[dict]:
    lines = (two / "probe" / f"rank-{rank}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_two_processes_are_one_run_on_2_cpus(two_processes: Path) -> None:
    output = (two_processes / "output.txt").read_text()
    assert "on 2 × cpu" in output
    assert output.count("on 2 × cpu") == 1  # the main process alone logs
    assert output.count(f"{two_processes / 'run'}: step {PROBE_STEPS}") == 1


def test_each_process_draws_other_windows_and_the_weights_stay_equal(
    two_processes: Path,
) -> None:
    first, second = probe(two_processes, 0), probe(two_processes, 1)
    assert len(first) == len(second) == PROBE_STEPS
    for step, (a, b) in enumerate(zip(first, second, strict=True), 1):
        assert len(a["windows"]) == len(b["windows"]) == PER_PROCESS_BATCH
        assert not set(a["windows"]) & set(b["windows"]), f"step {step}: a window drawn twice"
        assert a["weights"] == b["weights"], f"step {step}: the processes' weights differ"
    assert len({line["weights"] for line in first}) == PROBE_STEPS  # and they do train


def test_the_losses_are_one_process_s_with_the_same_global_batch(
    two_processes: Path, tiny_corpus: Corpus, tmp_path: Path, monkeypatch
) -> None:
    drawn: list[list[str]] = []
    draw = data.ShardedWindows.batch

    def recorded(self, per_process: int):
        windows = draw(self, per_process)
        drawn.append([digest(w.tobytes()) for w in windows])
        return windows

    monkeypatch.setattr(data.ShardedWindows, "batch", recorded)
    one = TrainConfig(data=(str(tiny_corpus.folder),), output=str(tmp_path / "one"),
                      preset="tiny", context=64, batch_size=2 * PER_PROCESS_BATCH,
                      max_steps=PROBE_STEPS, eval_every=3, save_every=3, log_every=1,
                      eval_windows=0)  # fmt: skip
    train(one, log=lambda _message: None)

    # The global batch of each step is the two processes' windows, in rank order.
    first, second = probe(two_processes, 0), probe(two_processes, 1)
    assert drawn == [a["windows"] + b["windows"] for a, b in zip(first, second, strict=True)]
    together, alone = rows(two_processes / "run"), rows(tmp_path / "one")
    assert [r["step"] for r in together] == list(range(1, PROBE_STEPS + 1))
    for key in ("train_loss", "val_loss"):
        two = {r["step"]: r[key] for r in together if key in r}
        one = {r["step"]: r[key] for r in alone if key in r}
        assert two == pytest.approx(one, rel=1e-3), key
    assert [r["tokens_seen"] for r in together] == [r["tokens_seen"] for r in alone]


def test_one_run_folder_is_written_and_loads(two_processes: Path) -> None:
    from transformers import AutoModelForCausalLM

    run = two_processes / "run"
    assert [step for step, _ in checkpoints(run)] == [3, 6]
    assert len(rows(run)) == PROBE_STEPS  # one writer: each step once
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # nothing half-done
    assert AutoModelForCausalLM.from_pretrained(run).config.n_positions == 64


def test_a_killed_launch_resumes_with_the_same_command(tiny_corpus: Corpus, tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = environment(tmp_path)
    command = [*ACCELERATE, *MODULE, "--data", str(tiny_corpus.folder), "--output", str(run),
               *SETTINGS,
               "--max-steps", "80", "--save-every", "10", "--eval-every", "40"]  # fmt: skip
    launcher = start(command, env, tmp_path / "killed")
    workers: list[int] = []
    try:
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        while not checkpoints(run) and launcher.poll() is None and time.monotonic() < deadline:
            workers = [c.pid for c in psutil.Process(launcher.pid).children(recursive=True)]
            time.sleep(0.05)
        assert launcher.poll() is None, (tmp_path / "killed").read_text()[-3000:]
        assert checkpoints(run), "no checkpoint before the timeout"
        workers = [c.pid for c in psutil.Process(launcher.pid).children(recursive=True)]
        assert len(workers) >= 2
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        # The workers, left in sessions of their own, notice and stop.
        _, alive = psutil.wait_procs([psutil.Process(p) for p in workers if psutil.pid_exists(p)],
                                     timeout=60)  # fmt: skip
        assert not alive, f"workers {alive} still run after their launcher was killed"
        killed_at = checkpoints(run)[-1][0]
        assert killed_at < 80

        text = finish(start(command, env, tmp_path / "resumed"), tmp_path / "resumed")
    finally:
        stop([launcher.pid, *workers])
    assert f"resuming {run} from step {killed_at}" in text
    assert f"{run}: step 80" in text
    assert rows(run)[-1]["step"] == 80
    assert [r["step"] for r in rows(run)] == sorted({r["step"] for r in rows(run)})
    assert checkpoints(run)[-1][0] == 80


def test_the_docs_give_the_commands_these_tests_run() -> None:
    text = DOCS.read_text(encoding="utf-8").replace("\\\n    ", "")
    section = text[text.index("## Several GPUs and nodes") : text.index("## The run folder")]
    for launch in (TORCHRUN, ACCELERATE):
        assert " ".join([*launch, *MODULE]) in section


def test_accelerate_launch_cpu_which_starts_one_process_is_refused(
    tiny_corpus: Corpus, tmp_path: Path, monkeypatch
) -> None:
    # What `accelerate launch --cpu --num_processes 2` gives its one process (no mpirun).
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    config = TrainConfig(data=(str(tiny_corpus.folder),), output=str(tmp_path / "run"),
                         preset="tiny", context=64, max_steps=1)  # fmt: skip
    with pytest.raises(TrainError, match=r"started one process, not several: on CPUs use "
                       r"`accelerate launch --multi_gpu --num_processes N"):  # fmt: skip
        train(config, log=lambda _message: None)


def test_corpus_build_with_the_datasets_engine_is_one_build_on_two_processes(
    tiny_corpus: Corpus, tune_folder: Path, tmp_path: Path
) -> None:
    from music_lm.corpus.config import BuildConfig
    from music_lm.corpus.hf_dataset import build_corpus_datasets

    # tiny_corpus: the same tunes built by the local engine in one process.
    config = BuildConfig((f"{tune_folder}:irish",), valid_fraction=0.2, test_fraction=0.2)
    said: list[str] = []
    result = build_corpus_datasets(config, tmp_path / "c", workers=2, log=said.append,
                                   cache_dir=tmp_path / "cache")  # fmt: skip
    assert result.manifest["engine"]["workers"] == 2  # Dataset.map(num_proc=2)
    assert any("written by 2 process(es)" in line for line in said)
    built = Corpus(tmp_path / "c")
    assert built.pieces == tiny_corpus.pieces
    for shard in tiny_corpus.manifest["shards"]:
        name = shard["name"]
        assert (built.folder / name).read_bytes() == (tiny_corpus.folder / name).read_bytes()
