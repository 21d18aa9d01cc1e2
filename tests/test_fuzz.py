"""A short fuzz run of both parsers, as part of `make test` (the long one is `make fuzz`,
its figures in docs/reliability.md).

MIDI bytes and token text may be refused only with our own errors (MidiError, CodecError,
GrammarError); anything else raised, an input slower than a second, or one that needs
gigabytes is a crash, and the test fails naming the input's bytes. Under atheris each
target runs in a subprocess, since libFuzzer ends its process on a crash; without atheris
the same checks run under Hypothesis, in process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from external import require
from hypothesis import HealthCheck, given, settings

from fuzz import midi_target, run, seeds, text_target
from fuzz.harness import atheris, inputs

TARGETS = {"midi": midi_target.check, "text": text_target.check}
SEEDS = {"midi": seeds.midi_seeds, "text": seeds.text_seeds}
# Per target: at most this many executions or seconds (the MIDI target does about 1,000
# a second on one core, the text target a few hundred): under 40 s for both.
SHORT_RUNS = 20_000
SHORT_SECONDS = 15
FUZZ_SEED = 1  # libFuzzer's -seed: the same mutations on every run (up to the time limit)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_seed_is_taken_or_refused_with_our_own_errors(target: str) -> None:
    for name, data in SEEDS[target]().items():
        try:
            TARGETS[target](data)
        except Exception as err:
            pytest.fail(f"{target} seed {name!r} ({run.hex_head(data)}): {err!r}")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_short_fuzz_run_finds_no_crash(target: str, tmp_path: Path) -> None:
    # Under atheris where it installs (x86-64 Linux, and always in CI); elsewhere the same
    # checks under Hypothesis, which knows nothing of coverage.
    if require("atheris", atheris is not None, "pip install atheris; x86-64 Linux wheels"):
        _atheris_run(target, tmp_path)
    else:
        _hypothesis_run(target)


def _atheris_run(target: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    seeds.write_corpus(SEEDS[target](), corpus)
    dictionary = tmp_path / f"{target}.dict"
    words = seeds.midi_dictionary() if target == "midi" else seeds.text_dictionary()
    seeds.write_dictionary(words, dictionary)
    result = run.run_target(
        target, corpus, tmp_path, SHORT_RUNS, SHORT_SECONDS, max_restarts=0,
        dictionary=dictionary, random_seed=FUZZ_SEED,
    )  # fmt: skip
    assert not result.crashes, f"{target}: " + "; ".join(c.describe() for c in result.crashes)
    assert result.execs > 1_000, f"{target}: only {result.execs} executions ran"


def _hypothesis_run(target: str) -> None:
    max_len = run.TARGETS[target]["max_len"]

    @settings(max_examples=5_000, deadline=1_000, suppress_health_check=list(HealthCheck))
    @given(inputs(list(SEEDS[target]().values()), max_len))
    def fuzz(data: bytes) -> None:
        TARGETS[target](data)

    fuzz()
