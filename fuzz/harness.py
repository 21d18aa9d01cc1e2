"""What both fuzz targets share: atheris when it is installed, Hypothesis when it is not.

A target script imports music_lm inside `instrumented()`, so that atheris (run as
`python fuzz/<target>.py`) sees coverage of our code only, then hands its `check` to
`fuzz_main`. Without atheris, `fuzz_main` runs the same `check` under Hypothesis for the
same number of inputs, mutating the corpus files it is given, and prints libFuzzer's
final-stats lines so that fuzz/run.py reads both kinds of run alike.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

try:
    import atheris
except ImportError:  # no wheel for this Python: the Hypothesis fallback runs instead
    atheris = None

Check = Callable[[bytes], None]


def instrumented(active: bool) -> AbstractContextManager[object]:
    """Instrument music_lm's modules as they are imported, when fuzzing under atheris."""
    if active and atheris is not None:
        return atheris.instrument_imports(include=["music_lm"])
    return contextlib.nullcontext()


def fuzz_main(check: Check, argv: list[str]) -> None:
    """Fuzz `check` with atheris (libFuzzer's flags and corpus folders in `argv`)."""
    if atheris is not None:
        atheris.Setup(argv, check)
        atheris.Fuzz()
    else:
        sys.exit(hypothesis_main(check, argv))


# ---- the fallback: Hypothesis with a budget of inputs ----


def _flag(argv: list[str], name: str, default: int) -> int:
    for arg in argv:
        if arg.startswith(f"-{name}="):
            return int(arg.split("=", 1)[1])
    return default


def read_corpus(folders: list[Path]) -> list[bytes]:
    return [path.read_bytes() for folder in folders for path in sorted(folder.iterdir())]


def mutate(seed: bytes, rng: random.Random) -> bytes:
    """A few of libFuzzer's mutations: flip, set, insert, erase, duplicate a byte range."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(5)
        if kind == 0 and at < len(data):
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and at < len(data):
            data[at] = rng.choice((0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif kind == 2:
            data[at:at] = rng.randbytes(rng.randint(1, 4))
        elif kind == 3:
            del data[at : at + rng.randint(1, 16)]
        else:
            data[at:at] = data[at : at + rng.randint(1, 64)]
    return bytes(data)


def inputs(seeds: list[bytes], max_len: int) -> SearchStrategy[bytes]:
    """The seeds, mutants of them and plain bytes: Hypothesis's stand-in for libFuzzer."""
    from hypothesis import strategies as st

    seeds = seeds or [b""]
    return st.one_of(
        st.sampled_from(seeds),
        st.builds(mutate, st.sampled_from(seeds), st.randoms(use_true_random=False)),
        st.binary(max_size=max_len),
    ).map(lambda data: data[:max_len])


def hypothesis_main(check: Check, argv: list[str]) -> int:
    """Run `check` on `-runs=N` inputs (the seeds, mutants of them and raw bytes); print the
    stats lines and, on a crash, write the input to `-artifact_prefix` and return 1."""
    from hypothesis import HealthCheck, given, settings

    runs = _flag(argv, "runs", 10_000)
    max_len = _flag(argv, "max_len", 4096)
    prefix = next((a.split("=", 1)[1] for a in argv if a.startswith("-artifact_prefix=")), "./")
    seeds = read_corpus([Path(a) for a in argv[1:] if not a.startswith("-")])
    executed = 0
    failing: list[bytes] = []  # the inputs that raised, the last one shrunk the most
    started = time.monotonic()

    @settings(
        max_examples=runs, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(inputs(seeds, max_len))
    def run(data: bytes) -> None:
        nonlocal executed
        executed += 1
        try:
            check(data)
        except BaseException:
            failing.append(data)
            raise

    try:
        run()
    except Exception as err:  # printed as atheris does: the marker, the error, its traceback
        print("=== Uncaught Python exception: ===")
        print(f"{type(err).__name__}: {err}")
        traceback.print_exception(err, file=sys.stdout)
    seconds = max(time.monotonic() - started, 1e-9)
    print(f"stat::number_of_executed_units: {executed}")
    print(f"stat::average_exec_per_sec:     {round(executed / seconds)}")
    print("fuzzer: hypothesis (atheris is not installed)")
    if not failing:
        return 0
    artifact = Path(f"{prefix}crash-{hashlib.sha1(failing[-1]).hexdigest()}")
    artifact.parent.mkdir(parents=True, exist_ok=True)
    artifact.write_bytes(failing[-1])
    print(f"Test unit written to {artifact}")  # the line libFuzzer prints, for fuzz/run.py
    return 1
