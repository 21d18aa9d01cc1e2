"""Run the fuzz targets for a budget of executions (or seconds) and write a JSON summary.

    python fuzz/run.py --execs 1000000            # what `make fuzz` runs
    python fuzz/run.py --execs 20000 --seconds 40 --out /tmp/fuzz

Each target runs in its own process (libFuzzer ends the process on a crash), on a
corpus seeded by fuzz/seeds.py that grows across runs in OUT/corpus/<target>. A crash,
timeout (1 s per input) or out-of-memory (2 GiB) is recorded with its input, and the
target is started again on the rest of its budget, up to --max-restarts times. The
figures come from libFuzzer's final stats; the summary goes to OUT/summary.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root makes `fuzz` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import seeds
from fuzz.harness import atheris

FUZZ_DIR = Path(__file__).resolve().parent
# Per target: its script, its share of the budget, and the longest input worth trying.
# The text target is about twice as slow per input (a walk asks the grammar for its allowed
# tokens at every step) and its grammar is the smaller surface, so it gets the smaller share.
TARGETS = {
    "midi": {"script": FUZZ_DIR / "midi_target.py", "share": 0.8, "max_len": 8192},
    "text": {"script": FUZZ_DIR / "text_target.py", "share": 0.2, "max_len": 8192},
}
TIMEOUT_S = 1  # an input that takes longer is a hang
RSS_LIMIT_MB = 2048  # an input that needs more is an absurd allocation
HEX_SHOWN = 96  # bytes of a crashing input shown in messages


@dataclass
class Crash:
    kind: str  # "crash" (an exception), "timeout" or "out-of-memory"
    error: str  # the exception's last line, or libFuzzer's summary
    artifact: str  # the file holding the input
    input_hex: str  # its first HEX_SHOWN bytes, hex

    def describe(self) -> str:
        return f"{self.kind}: {self.error} (input {self.input_hex}, in {self.artifact})"


@dataclass
class TargetResult:
    target: str
    execs: int = 0
    seconds: float = 0.0
    processes: int = 0
    corpus_files: int = 0
    coverage: int = 0  # libFuzzer's count of covered edges at the end (atheris only)
    crashes: list[Crash] = field(default_factory=list)

    @property
    def execs_per_second(self) -> float:
        return self.execs / self.seconds if self.seconds else 0.0


def hex_head(data: bytes, shown: int = HEX_SHOWN) -> str:
    text = data[:shown].hex()
    return text + (f"... ({len(data)} bytes)" if len(data) > shown else "")


def parse_output(output: str, artifact_dir: Path) -> tuple[int, int, Crash | None]:
    """(executions, covered edges, the crash if there was one) from a libFuzzer log."""
    stats = re.search(r"stat::number_of_executed_units: (\d+)", output)
    progress = re.findall(r"^#(\d+)\s", output, flags=re.MULTILINE)
    execs = int(stats.group(1)) if stats else int(progress[-1]) if progress else 0
    coverage = re.findall(r"\bcov: (\d+)", output)
    written = re.search(r"Test unit written to (\S+)", output)
    if written is None:
        return execs, int(coverage[-1]) if coverage else 0, None
    artifact = Path(written.group(1))
    if not artifact.is_absolute():
        artifact = artifact_dir / artifact.name
    data = artifact.read_bytes() if artifact.exists() else b""
    kind = "timeout" if artifact.name.startswith("timeout-") else "crash"
    if artifact.name.startswith("oom-"):
        kind = "out-of-memory"
    return (
        execs,
        int(coverage[-1]) if coverage else 0,
        Crash(kind, _error_line(output, kind), str(artifact), hex_head(data)),
    )


def _error_line(output: str, kind: str) -> str:
    """The exception's own line (printed before its traceback), or libFuzzer's summary."""
    if "=== Uncaught Python exception: ===" in output:
        block = output.split("=== Uncaught Python exception: ===", 1)[1]
        for line in block.splitlines():  # atheris prints the exception's line first
            if line and not line.startswith((" ", "==", "Traceback", "INFO", "MS:")):
                return line.strip()
    if kind == "timeout":  # where the input was when time ran out: the innermost frame
        frames = output.split("(most recent call first):", 1)[-1]
        frame = re.search(r'File "([^"]+)", line (\d+) in (\w+)', frames)
        if frame:
            where = f"{Path(frame.group(1)).name}:{frame.group(2)} ({frame.group(3)})"
            return f"over {TIMEOUT_S} s per input, in {where}"
    summary = re.search(r"SUMMARY: libFuzzer: (.+)", output)
    return summary.group(1) if summary else kind


def run_target(
    target: str,
    corpus: Path,
    out: Path,
    runs: int,
    seconds: float | None = None,
    max_restarts: int = 5,
    dictionary: Path | None = None,
    random_seed: int | None = None,
) -> TargetResult:
    """Fuzz one target for `runs` executions (and at most `seconds`), restarting after
    each crash on what is left of the budget; logs go to OUT/logs. random_seed: libFuzzer's
    -seed (the same mutations each time; by default it draws one)."""
    spec = TARGETS[target]
    artifacts = out / "crashes" / target
    logs = out / "logs"
    artifacts.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    result = TargetResult(target)
    started = time.monotonic()
    while result.processes <= max_restarts:
        left_runs = runs - result.execs
        left_seconds = None if seconds is None else seconds - (time.monotonic() - started)
        if left_runs <= 0 or (left_seconds is not None and left_seconds < 1):
            break
        command = [
            sys.executable, str(spec["script"]), f"-runs={left_runs}",
            f"-max_len={spec['max_len']}", f"-timeout={TIMEOUT_S}",
            f"-rss_limit_mb={RSS_LIMIT_MB}", "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/",
        ]  # fmt: skip
        if left_seconds is not None:
            command.append(f"-max_total_time={int(left_seconds)}")
        if dictionary is not None and atheris is not None:
            command.append(f"-dict={dictionary}")
        if random_seed is not None:
            command.append(f"-seed={random_seed + result.processes}")
        command.append(str(corpus))
        done = subprocess.run(
            command, capture_output=True, text=True, errors="replace", check=False
        )
        output = done.stdout + done.stderr
        result.processes += 1
        log = logs / f"{target}-{result.processes}.log"
        log.write_text(output, encoding="utf-8")
        execs, coverage, crash = parse_output(output, artifacts)
        result.execs += execs
        result.coverage = max(result.coverage, coverage)
        if crash is not None:
            result.crashes.append(crash)
        elif done.returncode != 0:
            raise RuntimeError(f"fuzz target {target} failed (exit {done.returncode}); see {log}")
        elif execs == 0:
            break  # nothing ran: do not loop
    result.seconds = round(time.monotonic() - started, 1)
    result.corpus_files = sum(1 for _ in corpus.iterdir())
    return result


def prepare(out: Path) -> dict[str, tuple[Path, Path]]:
    """Seed OUT/corpus/<target> (adding to what earlier runs found) and write the
    dictionaries; return target -> (corpus folder, dictionary)."""
    corpus = out / "corpus"
    seeds.write_corpus(seeds.midi_seeds(), corpus / "midi")
    seeds.write_corpus(seeds.text_seeds(), corpus / "text")
    seeds.write_dictionary(seeds.midi_dictionary(), out / "midi.dict")
    seeds.write_dictionary(seeds.text_dictionary(), out / "text.dict")
    return {target: (corpus / target, out / f"{target}.dict") for target in TARGETS}


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.MULTILINE)
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores"


def summary(results: list[TargetResult], started: float) -> dict:
    execs = sum(r.execs for r in results)
    seconds = round(time.monotonic() - started, 1)
    return {
        "date": datetime.date.today().isoformat(),
        "fuzzer": f"atheris {_atheris_version()}" if atheris else "hypothesis (no atheris)",
        "python": platform.python_version(),
        "machine": machine(),
        "total_execs": execs,
        "total_seconds": seconds,
        "crashes": sum(len(r.crashes) for r in results),
        "targets": {
            r.target: {**asdict(r), "execs_per_second": round(r.execs_per_second, 1)}
            for r in results
        },
    }


def _atheris_version() -> str:
    from importlib.metadata import version

    return version("atheris")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--execs", type=int, default=1_000_000, help="executions, all targets")
    parser.add_argument("--seconds", type=float, help="stop after this long, all targets")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    parser.add_argument("--out", type=Path, default=Path("build/fuzz"))
    parser.add_argument("--max-restarts", type=int, default=5, help="per target, after crashes")
    args = parser.parse_args(argv)
    started = time.monotonic()
    folders = prepare(args.out)
    shares = {t: TARGETS[t]["share"] for t in args.targets}
    total_share = sum(shares.values())
    results = []
    for target in args.targets:
        share = shares[target] / total_share
        corpus, dictionary = folders[target]
        seconds = None if args.seconds is None else args.seconds * share
        result = run_target(
            target, corpus, args.out, round(args.execs * share), seconds,
            args.max_restarts, dictionary,
        )  # fmt: skip
        results.append(result)
        print(
            f"{target}: {result.execs:,} execs in {result.seconds:,.0f} s "
            f"({result.execs_per_second:,.0f}/s), {len(result.crashes)} crashes"
        )
        for crash in result.crashes:
            print(f"  {crash.describe()}")
    report = summary(results, started)
    (args.out / "summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"total: {report['total_execs']:,} execs in {report['total_seconds']:,.0f} s; "
          f"summary in {args.out / 'summary.json'}")  # fmt: skip
    return 1 if report["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
