"""Continuations of real band MIDI: does a musician keep them?

    python bench/continuation.py                      # 24 seeds: defaults, --adapt, the anchor
    python bench/continuation.py --seeds 8 --adapt 0  # the 8 seeds of "Done when", no adaptation
    python bench/continuation.py --out midi_out/bench # + MIDI and a piano roll per seed

Seeds. The band MIDI files (a drum track on channel 10 and pitched tracks) of the Debian
packages the project may use (`music_lm.corpus.debian`). From each file, the first 4 bars
after bar 4 in which the drums and at least one pitched track play in every bar (intros are
often sparse). The seed is those bars as a piece of their own (`piece_from_bar`, the header a
training window gets: the tempo, meter and key in force, only the tracks that play on), checked
by the grammar. Seeds are taken round-robin over the packages (sorted), and within a package in
an order that spreads over its sorted files (0, 1/2, 1/4, 3/4, ... of the list), so the first N
seeds are a prefix of the first N+1. The first 8 are the issue's "8 band seeds".

Each seed is continued by 4 bars with `music_lm.generate` (random seed 1000 + the seed's
number, the same in every column): with the default options, with `adapt=STEPS` when the API has
it, and with the anchor (the commit before [sanity], in a git worktree, run in a subprocess with
PYTHONPATH on it). The checks read the output MIDI (the project's writer) with mido alone:

- kit: every new drum note's key is on General MIDI's kit (35..81);
- end: no note, of the seed or new, sounds after the end of the last new bar (worst overhang);
- drums: the new bars' drum hits per bar are 0.5-2x those of the seed's last 2 bars;
- play on: the share of the tracks that play in the seed's last bar and play in the new bars
  (passes at 3/4 or more);
- unisons: no track starts one pitch twice at one onset in the new bars.

They are floors, not taste: a continuation can pass them all and still lose the groove. So the
summary also shows, as figures without a pass mark, the drum hits per drum onset (new against
the seed: a kit struck all at once on the downbeats), the share of new drum hits on the keys
the seed's drums use, and the new notes squeezed into the last 1/12 quarter of the piece.
`--ablate` adds a column per decoding default turned off (and one with the seed's drum keys).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import mido
import numpy as np

REPO = Path(__file__).resolve().parents[1]
ANCHOR_COMMIT = "2e72e9b"
ANCHOR_TREE = Path("/tmp/anchor")
SEED_BARS = 4
NEW_BARS = 4
FIRST_SEED_BAR = 4  # 0-based: the seed starts after bar 4 at the earliest
DONE_WHEN_SEEDS = 8  # the "7 of 8 band seeds": the first 8 seeds
GM_KIT = range(35, 82)
DRUM_RATIO = (0.5, 2.0)
PLAY_ON_SHARE = 0.75
RANDOM_SEED_BASE = 1000
DRUM_CHANNEL = 9  # MIDI channel 10, counted from zero
MARKER = "music_lm continuation"


# ---- seeds ----


@dataclass(frozen=True)
class BandSeed:
    name: str  # package/file
    package: str
    relative_path: str
    licence: str
    first_bar: int  # 1-based bar of the source where the seed starts
    text: str  # the seed's token text: header + 4 bars


def _bars_playing(ids: list[int]) -> tuple[list[int], list[set[int]], set[int]]:
    """Token index of every `bar`, the tracks (1-based) with a note in each bar, the drum tracks."""
    from music_lm.tokens.vocab import VOCAB

    ranges, bar = VOCAB.ranges, VOCAB.ids["bar"]
    instruments = [VOCAB.tokens[i] for i in ids if i in ranges["inst"]]
    drums = {n + 1 for n, name in enumerate(instruments) if name == "inst:drums"}
    starts = [i for i, token in enumerate(ids) if token == bar]
    playing = []
    for start, stop in zip(starts, [*starts[1:], len(ids)], strict=True):
        track, tracks = None, set()
        for token in ids[start:stop]:
            if token in ranges["track"]:
                track = token - ranges["track"].start + 1
            elif token in ranges["pitch"] or token in ranges["drum"]:
                tracks.add(track)
        playing.append(tracks)
    return starts, playing, drums


def seed_of_file(path: Path) -> tuple[int, str] | None:
    """(0-based first bar, seed text) of the first 4 bars after bar 4 where the drums and a
    pitched track play in every bar; None when the file has no such stretch (or no drums)."""
    import music_lm
    from music_lm.corpus.dataset import piece_from_bar
    from music_lm.tokens.vocab import VOCAB

    ids = [VOCAB.ids[word] for word in music_lm.midi_to_text(path).split()]
    starts, playing, drums = _bars_playing(ids)
    band = [bool(tracks & drums) and bool(tracks - drums) for tracks in playing]
    candidates = range(FIRST_SEED_BAR, len(band) - SEED_BARS + 1)
    first = next((b for b in candidates if all(band[b : b + SEED_BARS])), None)
    if first is None:
        return None
    stop = starts[first + SEED_BARS] if first + SEED_BARS < len(starts) else len(ids) - 1
    # the bars up to the stretch's end, closed: piece_from_bar then moves the tempo, meter
    # and key in force into the header and keeps only the tracks that play
    cut = np.array([*ids[:stop], VOCAB.ids["end"]], dtype=np.int64)
    seed = piece_from_bar(cut, starts[first])
    text = " ".join(VOCAB.tokens[i] for i in seed)
    music_lm.validate(text)  # the grammar's word: a valid piece
    return first, text


def _spread_order(count: int) -> list[int]:
    """0..count-1 ordered so that every prefix spreads over the range (van der Corput)."""
    order: list[int] = []
    j = 0
    while len(order) < count:
        fraction, denominator, k = 0.0, 1.0, j
        while k:
            denominator *= 2
            fraction += (k % 2) / denominator
            k //= 2
        index = int(fraction * count)
        if index not in order:
            order.append(index)
        j += 1
    return order


def band_seeds(count: int, cache_dir: Path) -> tuple[list[BandSeed], dict[str, int]]:
    """The first `count` band seeds, and how many files each package has and gives seeds."""
    from music_lm.corpus.debian import ALLOWED_PACKAGES, package_midi_files

    candidates: dict[str, list[BandSeed]] = {}
    files = Counter()
    for package in sorted(ALLOWED_PACKAGES):
        for midi in package_midi_files(package, cache_dir):
            files["files"] += 1
            try:
                found = seed_of_file(midi.path)
            except Exception:  # songwrite's .mid files are not MIDI: not a band seed
                files["unreadable"] += 1
                continue
            if found is None:
                continue
            first, text = found
            name = f"{package}/{Path(midi.relative_path).name}"
            seed = BandSeed(name, package, midi.relative_path, midi.licence, first + 1, text)
            candidates.setdefault(package, []).append(seed)
    files["band files"] = sum(len(seeds) for seeds in candidates.values())
    spread = {p: [s[i] for i in _spread_order(len(s))] for p, s in candidates.items()}
    seeds: list[BandSeed] = []
    for round_ in range(max(len(s) for s in spread.values())):
        seeds += [s[round_] for s in spread.values() if round_ < len(s)]
    return seeds[:count], dict(files)


# ---- continuing (also the anchor's worker: only the API the anchor has) ----


def continue_seed(
    text: str, random_seed: int, adapt: int | None, options: dict | None = None
) -> tuple[bytes, float]:
    """The output MIDI of a 4-bar continuation (the default options, but for the
    Constraints fields in `options`), and its seconds."""
    import music_lm
    from music_lm.generation.outputs import variant_files

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write(text + "\n")
    try:
        extra = {"adapt": adapt} if adapt else {}
        started = time.perf_counter()
        generation = music_lm.generate(
            handle.name,
            constraints=music_lm.Constraints(bars=NEW_BARS, **(options or {})),
            random_seed=random_seed,
            **extra,
        )
        seconds = time.perf_counter() - started
    finally:
        os.unlink(handle.name)
    return variant_files(generation, generation.variants[0], "bench")[".mid"], seconds


def speed_seconds(runs: int = 3) -> float:
    """Median seconds of 8 bars of 4/4 continuing midi_in/band_with_drums.mid, after a warm-up."""
    import music_lm

    seed = REPO / "midi_in" / "band_with_drums.mid"
    constraints = music_lm.Constraints(bars=8)
    music_lm.generate(seed, constraints=constraints, random_seed=0)  # loads the model
    times = []
    for run in range(runs):
        started = time.perf_counter()
        music_lm.generate(seed, constraints=constraints, random_seed=run + 1)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def worker(job_path: Path) -> None:
    """Run a column from a job file (seeds, random seeds) and write its MIDI files and times."""
    job = json.loads(job_path.read_text())
    out = Path(job["out"])
    times = []
    pairs = zip(job["texts"], job["random_seeds"], strict=True)
    for index, (text, random_seed) in enumerate(pairs):
        midi, seconds = continue_seed(text, random_seed, job["adapt"], job["options"])
        (out / f"{index:03d}.mid").write_bytes(midi)
        times.append(seconds)
        print(f"  {index + 1}/{len(job['texts'])}: {seconds:.1f} s", file=sys.stderr, flush=True)
    speed = speed_seconds() if job.get("speed") else None
    (out / "times.json").write_text(json.dumps({"seconds": times, "speed_s": speed}))


@dataclass(frozen=True)
class Column:
    label: str
    tree: Path  # the checkout whose music_lm runs it
    adapt: int | None = None
    options: tuple[tuple[str, object], ...] = ()  # Constraints fields, else the defaults
    speed: bool = False  # also time 8 bars


# --ablate: each decoding default turned off on its own, to tell what the drums lose to,
# and the seed's own drum keys instead of the GM kit
ABLATIONS: dict[str, dict] = {
    "drum keys any": {"drum_keys": "any"},
    "drum length any": {"drum_steps": None},
    "no loop guard": {"loop_guard": None},
    "drum keys seed": {"drum_keys": "seed"},
}


def run_column(
    seeds: list[BandSeed], column: Column, random_seed_base: int = RANDOM_SEED_BASE
) -> tuple[list[bytes], list[float], float | None]:
    """A column in a fresh process whose `music_lm` is the one of `column.tree`."""
    tree = column.tree
    with tempfile.TemporaryDirectory() as folder:
        job = Path(folder) / "job.json"
        job.write_text(json.dumps({
            "texts": [s.text for s in seeds],
            "random_seeds": [random_seed_base + i for i in range(len(seeds))],
            "adapt": column.adapt, "options": dict(column.options), "out": folder,
            "speed": column.speed,
        }))  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, __file__, "--worker", str(job)]
        subprocess.run(command, env=env, check=True, cwd=tree)
        done = json.loads((Path(folder) / "times.json").read_text())
        midis = [(Path(folder) / f"{i:03d}.mid").read_bytes() for i in range(len(seeds))]
    return midis, done["seconds"], done["speed_s"]


# ---- checks on the output MIDI, read with mido alone ----


@dataclass(frozen=True)
class Checks:
    off_kit_keys: tuple[int, ...]  # new drum notes' keys outside 35..81
    overhang_quarters: float  # the latest note end after the last new bar's end (0: none)
    drum_ratio: float | None  # new drum hits per bar / the seed's last 2 bars' (None: none there)
    play_on_share: float  # of the seed's last-bar tracks, the share that play in the new bars
    unisons: int  # new notes that repeat a pitch their track starts at the same onset
    # not a check, a look at the groove: drum hits per drum onset, new bars / the seed's
    # last 2 bars (a kit hit all at once on the downbeats passes the density check)
    hits_per_onset_ratio: float | None
    seed_keys_share: float | None  # of the new drum hits, the share on keys the seed's drums use
    squeezed: int  # new notes starting in the last 1/12 quarter of the last new bar
    new_notes: int
    seconds: float

    @property
    def passed(self) -> dict[str, bool]:
        low, high = DRUM_RATIO
        return {
            "kit": not self.off_kit_keys,
            "end": self.overhang_quarters <= 0,
            "drums": self.drum_ratio is not None and low <= self.drum_ratio <= high,
            "play on": self.play_on_share >= PLAY_ON_SHARE,
            "unisons": self.unisons == 0,
        }

    @property
    def all_passed(self) -> bool:
        return all(self.passed.values())


def _notes(midi: mido.MidiFile) -> list[tuple[int, int, int, int, int]]:
    """(track, channel, pitch, onset tick, end tick) of every note; a note-on pairs with the
    first open note-on of its key (an unended note ends at the end of its track)."""
    notes = []
    for track_index, track in enumerate(midi.tracks):
        tick = 0
        open_notes: dict[tuple[int, int], list[int]] = defaultdict(list)
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity > 0:
                open_notes[message.channel, message.note].append(tick)
            elif message.type in ("note_on", "note_off"):
                started = open_notes[message.channel, message.note]
                if started:
                    notes.append((track_index, message.channel, message.note, started.pop(0), tick))
        for (channel, pitch), onsets in open_notes.items():
            notes += [(track_index, channel, pitch, onset, tick) for onset in onsets]
    return notes


def _meta(midi: mido.MidiFile) -> tuple[int, int]:
    """(continuation tick, ticks per bar) from the marker and the meter in force there."""
    at = None
    meters: list[tuple[int, int, int]] = []
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "marker" and message.text == MARKER:
                at = tick
            elif message.type == "time_signature":
                meters.append((tick, message.numerator, message.denominator))
    if at is None:
        raise ValueError("the output MIDI has no continuation marker")
    _, numerator, denominator = max((m for m in meters if m[0] <= at), default=(0, 4, 4))
    return at, midi.ticks_per_beat * 4 * numerator // denominator


def _hits_per_onset(drum_notes: list[tuple[int, int, int, int, int]]) -> float:
    onsets = {n[3] for n in drum_notes}
    return len(drum_notes) / len(onsets) if onsets else 0.0


def check_midi(data: bytes, seconds: float) -> Checks:
    midi = mido.MidiFile(file=BytesIO(data))
    start, bar = _meta(midi)
    end = start + NEW_BARS * bar
    notes = _notes(midi)
    new = [n for n in notes if n[3] >= start]
    drum_new = [n for n in new if n[1] == DRUM_CHANNEL]
    drum_seed = [n for n in notes if n[1] == DRUM_CHANNEL and start - 2 * bar <= n[3] < start]
    last_bar = {(n[0], n[1]) for n in notes if start - bar <= n[3] < start}
    playing_on = {(n[0], n[1]) for n in new} & last_bar
    starts = Counter((n[0], n[1], n[2], n[3]) for n in new)
    worst = max((n[4] for n in notes), default=end)
    hits_new, hits_seed = _hits_per_onset(drum_new), _hits_per_onset(drum_seed)
    seed_keys = {n[2] for n in notes if n[1] == DRUM_CHANNEL and n[3] < start}
    on_seed_keys = sum(n[2] in seed_keys for n in drum_new)
    return Checks(
        off_kit_keys=tuple(sorted({n[2] for n in drum_new if n[2] not in GM_KIT})),
        overhang_quarters=max(0, worst - end) / midi.ticks_per_beat,
        drum_ratio=(len(drum_new) / NEW_BARS) / (len(drum_seed) / 2) if drum_seed else None,
        play_on_share=len(playing_on) / len(last_bar) if last_bar else 1.0,
        unisons=sum(count - 1 for count in starts.values()),
        hits_per_onset_ratio=hits_new / hits_seed if hits_new and hits_seed else None,
        seed_keys_share=on_seed_keys / len(drum_new) if drum_new else None,
        squeezed=sum(n[3] >= end - midi.ticks_per_beat // 12 for n in new),
        new_notes=len(new),
        seconds=seconds,
    )


# ---- report ----


def _row(index: int, seed: BandSeed, checks: dict[str, Checks]) -> str:
    cells = [str(index + 1), f"`{seed.name}` (bar {seed.first_bar})"]
    for column in checks.values():
        p = column.passed
        mark = lambda ok: "" if ok else " ✗"  # noqa: E731
        kit = f"{len(column.off_kit_keys)} off{mark(p['kit'])}"
        ratio = "—" if column.drum_ratio is None else f"{column.drum_ratio:.2f}"
        cells.append(
            f"{kit}; {column.overhang_quarters:g} q{mark(p['end'])}; {ratio}{mark(p['drums'])}; "
            f"{column.play_on_share:.2f}{mark(p['play on'])}; {column.unisons}{mark(p['unisons'])}"
            f" | {'**pass**' if column.all_passed else 'fail'}"
        )
    return "| " + " | ".join(cells) + " |"


def _median(values) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known):.2f}" if known else "—"


def _summary(name: str, rows: list[Checks], subset: int) -> list[str]:
    ratios = [c.drum_ratio for c in rows if c.drum_ratio is not None] or [float("nan")]
    checks = list(rows[0].passed)
    counts = ", ".join(f"{k} {sum(c.passed[k] for c in rows)}" for k in checks)
    return [
        f"| {name} | {sum(c.all_passed for c in rows)}/{len(rows)} "
        f"| {sum(c.all_passed for c in rows[:subset])}/{min(subset, len(rows))} | {counts} "
        f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) "
        f"| {statistics.median(c.play_on_share for c in rows):.2f} "
        f"| {max(c.overhang_quarters for c in rows):g} "
        f"| {sum(c.unisons for c in rows)} "
        f"| {statistics.median(c.seconds for c in rows):.1f} "
        f"| {_median(c.hits_per_onset_ratio for c in rows)} "
        f"| {_median(c.seed_keys_share for c in rows)} "
        f"| {sum(c.squeezed for c in rows)} of {sum(c.new_notes for c in rows)} |"
    ]


def _machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                     if line.startswith("Model name"))  # fmt: skip
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"


def _git_head() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=REPO)  # fmt: skip
    return done.stdout.strip() or "unknown"


def _write_outputs(out: Path, seeds: list[BandSeed], midis: dict[str, list[bytes]]) -> None:
    from music_lm.render.pianoroll import midi_pianoroll

    out.mkdir(parents=True, exist_ok=True)
    for column, files in midis.items():
        for index, (seed, midi) in enumerate(zip(seeds, files, strict=True)):
            stem = f"{index + 1:02d}-{Path(seed.name).stem}-{column}"
            (out / f"{stem}.mid").write_bytes(midi)
            (out / f"{stem}.png").write_bytes(midi_pianoroll(midi, name=stem))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=24, help="band seeds (default 24)")
    parser.add_argument("--adapt", type=int, default=20, help="adaptation steps (0: no column)")
    parser.add_argument(
        "--anchor",
        type=Path,
        default=ANCHOR_TREE,
        help=f"a worktree of {ANCHOR_COMMIT} (missing: no anchor column)",
    )
    parser.add_argument("--out", type=Path, help="write each continuation's MIDI and piano roll")
    parser.add_argument("--random-seed", type=int, default=RANDOM_SEED_BASE,
                        help="seed k is continued with this + k")  # fmt: skip
    parser.add_argument("--ablate", action="store_true",
                        help="add a column per decoding default turned off")  # fmt: skip
    parser.add_argument("--cache", type=Path, default=REPO / "data" / "debian")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()  # fmt: skip
    if args.worker:
        worker(args.worker)
        return

    import music_lm

    started = time.perf_counter()
    seeds, files = band_seeds(args.seeds, args.cache)
    print(f"{len(seeds)} seeds of {files} ({time.perf_counter() - started:.1f} s)", flush=True)
    columns = [Column("defaults", REPO, speed=True)]
    has_adapt = "adapt" in inspect.signature(music_lm.generate).parameters
    if args.adapt and has_adapt:
        columns.append(Column(f"adapt {args.adapt}", REPO, adapt=args.adapt))
    elif args.adapt:
        print("music_lm.generate has no `adapt` yet: no adapt column", flush=True)
    if args.ablate:
        columns += [Column(k, REPO, options=tuple(v.items())) for k, v in ABLATIONS.items()]
    if (args.anchor / "music_lm").is_dir():
        columns.append(Column(f"anchor {ANCHOR_COMMIT}", args.anchor, speed=True))
    checks: dict[str, list[Checks]] = {}
    midis: dict[str, list[bytes]] = {}
    speeds: dict[str, float] = {}
    for column in columns:
        print(f"{column.label} ...", flush=True)
        outputs, seconds, speed = run_column(seeds, column, args.random_seed)
        midis[column.label.replace(" ", "-")] = outputs
        checks[column.label] = [check_midi(m, s) for m, s in zip(outputs, seconds, strict=True)]
        if speed is not None:
            speeds[column.label] = speed

    print(f"\n- machine: {_machine()}; date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
          f"music_lm at git {_git_head()}")  # fmt: skip
    print(f"- seeds: {len(seeds)} band seeds from {files}; the first {DONE_WHEN_SEEDS} are "
          f"the issue's 8: {', '.join(s.name for s in seeds[:DONE_WHEN_SEEDS])}")  # fmt: skip
    print("- per cell: off-kit drum keys; worst overhang past the end (quarters); new drum hits "
          "per bar / the seed's last 2 bars'; share of the last bar's tracks that play on; "
          "stacked unisons | all passed. ✗ marks a failed check.\n")  # fmt: skip
    print("| # | seed | " + " | ".join(checks) + " |")
    print("|---|---|" + "---|" * len(checks))
    for index, seed in enumerate(seeds):
        print(_row(index, seed, {c: rows[index] for c, rows in checks.items()}))
    print(f"\n| column | all checks | of the first {DONE_WHEN_SEEDS} | per check | drum ratio "
          "median (range) | play-on share median | worst overhang (q) | unisons | s per "
          "continuation (median) | drum hits per onset, new / seed (median) | new drum hits on "
          "the seed's keys (median) | new notes in the last 1/12 quarter |")  # fmt: skip
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for column, rows in checks.items():
        print("\n".join(_summary(column, rows, DONE_WHEN_SEEDS)))
    for column, seconds in speeds.items():
        print(f"\n- speed ({column}): 8 bars of 4/4 continuing midi_in/band_with_drums.mid, "
              f"median of 3 after a warm-up: {seconds:.2f} s (goal < 3 s)")  # fmt: skip
    if args.out:
        _write_outputs(args.out, seeds, midis)
        print(f"\nMIDI and piano rolls in {args.out}")
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(
            {"seeds": [asdict(s) | {"text": None} for s in seeds],
             "checks": {c: [asdict(r) for r in rows] for c, rows in checks.items()},
             "speed_s": speeds}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
