"""Benchmark the corpus build: tokenising a MIDI folder (music_lm against MidiTok), the
Hugging Face datasets engine against the local one, and the wall time of a full music21 build.

    .venv/bin/python bench/corpus.py                     # parts 1 and 2 (the defaults)
    .venv/bin/python bench/corpus.py --only tokenise     # one part: tokenise, datasets, music21
    .venv/bin/python bench/corpus.py --music21           # part 3 alone: builds all of music21
    .venv/bin/python bench/corpus.py --music21-manifest /tmp/full/corpus   # a finished build
    .venv/bin/python bench/corpus.py --only rebuild      # part 4: a rebuild, nothing changed
    .venv/bin/python bench/corpus.py --render            # rewrite the section from the JSON

1. tokenise: --files generated MIDI files (cached in bench/.cache/corpus-gen-N-SEED/), one
   process, file by file, file reading included: music_lm's per-file corpus work
   (music_lm.corpus.encoding.encode_item: grid, encode, token ids) against MidiTok 3 REMI and TSD
   (symusic Score, tokenize to ids) configured as in bench/codec.py; files/s, best of --repeat.
2. datasets: build_corpus_datasets (Dataset.map, num_proc W) against build_corpus (a pool of W
   processes, cold cache), both over the same --datasets-files generated files; then the local
   build again over its cache, nothing changed (the incremental case).
3. music21: `music-lm corpus build -s music21` as a subprocess with a fresh cache: wall time,
   pieces and tokens per split, failures, duplicates, the folder's size on disk.
4. rebuild: `music-lm corpus build` as a subprocess on --rebuild-files generated files (80),
   one worker: a first build (fresh cache, new folder) against a build again into the same
   folder with nothing changed; whole-process wall times, the best of --repeat each, and
   whether the rebuild imported transformers (`python -X importtime`).

The raw figures of each part are kept in bench/corpus_results.json; the "## Corpus build"
section of --out is rendered from all of them, so a part run alone keeps the others' figures.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata as meta
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path
from types import ModuleType
from typing import Any

import mido
from mido import Message, MetaMessage

from music_lm.corpus.build import BuildResult, build_corpus
from music_lm.corpus.config import BuildConfig
from music_lm.corpus.dataset import SPLITS
from music_lm.corpus.encoding import encode_item
from music_lm.corpus.sources import Item

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
RESULTS = BENCH / "corpus_results.json"
SECTION = "## Corpus build"
PARTS = ("tokenise", "datasets", "music21", "rebuild")
KINDS = ("melody", "chords", "band", "band-format0")  # generated files, in turn
PPQS = (96, 120, 192, 384, 480, 960)
MIB = 1024 * 1024


def codec() -> ModuleType:
    """bench/codec.py, imported when first needed: it loads MidiTok (1-2 s), which the local
    build's workers, started with spawn (they run this script's top level again), need not."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import codec as module

    return module


# ---- the files ----


def to_midi(ppq: int, tracks: list[list[tuple[int, Any]]], format0: bool = False) -> bytes:
    """Standard MIDI File bytes of tracks of (absolute tick, message); format0: one track."""
    if format0:
        tracks = [[event for events in tracks for event in events]]
    midi = mido.MidiFile(type=0 if format0 else 1, ticks_per_beat=ppq)
    for events in tracks:  # note-offs before note-ons on a tick, then delta times
        events = sorted(events, key=lambda e: (e[0], e[1].type == "note_on" and e[1].velocity > 0))
        ticks = [0] + [tick for tick, _ in events]
        midi.tracks.append(
            mido.MidiTrack(m.copy(time=t - ticks[i]) for i, (t, m) in enumerate(events))
        )
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def conductor(ppq: int, beats: int, bpm: float) -> list[tuple[int, Any]]:
    return [(0, MetaMessage("time_signature", numerator=beats, denominator=4)),
            (0, MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))]  # fmt: skip


def note(channel: int, on: int, off: int, pitch: int, velocity: int) -> list[tuple[int, Any]]:
    return [(on, Message("note_on", channel=channel, note=pitch, velocity=velocity)),
            (off, Message("note_off", channel=channel, note=pitch))]  # fmt: skip


def melody_file(rng: random.Random) -> bytes:
    """One instrument, one note at a time, on the grid (as a notation program writes it)."""
    ppq, beats, bars = rng.choice(PPQS), rng.choice((2, 3, 4)), rng.randint(8, 32)
    lengths = [ppq // 4, ppq // 2, ppq // 2, ppq, ppq, ppq * 3 // 2, ppq * 2, ppq // 3]
    events = [(0, Message("program_change", channel=0, program=rng.randrange(80)))]
    tick, pitch = 0, rng.randint(55, 79)
    while tick < ppq * beats * bars:
        length = rng.choice(lengths)
        if length == ppq // 3:  # a triplet is three notes
            length *= 3
            for i in range(3):
                pitch = min(96, max(36, pitch + rng.randint(-4, 4)))
                events += note(0, tick + i * ppq // 3, tick + (i + 1) * ppq // 3, pitch, 80)
        elif rng.random() > 0.1:  # else a rest
            pitch = min(96, max(36, pitch + rng.randint(-5, 5)))
            events += note(0, tick, tick + length, pitch, rng.choice((64, 80, 96)))
        tick += length
    return to_midi(ppq, [conductor(ppq, beats, rng.uniform(60, 180)), events])


def chords_file(rng: random.Random) -> bytes:
    """Played block chords (jittered, overlapping) over a bass line, two tracks."""
    ppq, beats, bars = rng.choice(PPQS), rng.choice((3, 4)), rng.randint(8, 24)
    chord, bass = [(0, Message("program_change", channel=0, program=rng.randrange(8)))], []
    for bar in range(bars):
        root = rng.choice((48, 50, 52, 53, 55, 57))
        shape = rng.choice(((0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 5, 7)))
        for beat in range(0, beats, rng.choice((1, 2))):
            start = (bar * beats + beat) * ppq
            for interval in shape:
                on = max(0, start + round(rng.gauss(0, ppq / 30)))
                off = on + round(ppq * rng.uniform(0.8, 2.2))
                chord += note(0, on, off, root + 12 + interval, rng.randint(40, 110))
            bass += note(1, start, start + ppq - 1, root - 12, rng.randint(60, 100))
    return to_midi(ppq, [conductor(ppq, beats, rng.uniform(60, 140)), chord, bass])


def generated_file(kind: str, rng: random.Random) -> bytes:
    if kind == "melody":
        return melody_file(rng)
    if kind == "chords":
        return chords_file(rng)
    data = codec().human_file(rng)  # 1-3 instruments and drums, played, a tempo change
    if kind == "band":
        return data
    midi = mido.MidiFile(file=io.BytesIO(data))  # the same music in one track (format 0)
    merged = mido.MidiFile(type=0, ticks_per_beat=midi.ticks_per_beat)
    merged.tracks.append(mido.merge_tracks(midi.tracks))
    buffer = io.BytesIO()
    merged.save(file=buffer)
    return buffer.getvalue()


def make_file(job: tuple[int, int]) -> tuple[str, bytes]:
    """File number `index` of a seed: its own random stream, so any count has the same files
    first."""
    index, seed = job
    kind = KINDS[index % len(KINDS)]
    return f"{index:05d}-{kind}.mid", generated_file(kind, random.Random(f"{seed}:{index}"))


def generated_folder(count: int, seed: int, workers: int) -> Path:
    """`count` generated MIDI files (KINDS in turn), written once; files.json marks the folder
    complete."""
    folder = CACHE / f"corpus-gen-{count}-{seed}"
    marker = folder / "files.json"
    if not marker.exists():
        print(f"writing {count} MIDI files to {folder}", file=sys.stderr)
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [(index, seed) for index in range(count)]
        codec()  # imported once here, not in each forked worker
        with Pool(max(1, workers)) as pool:
            names = []
            for name, data in pool.imap(make_file, jobs, chunksize=64):
                (folder / name).write_bytes(data)
                names.append(name)
        marker.write_text(json.dumps({"seed": seed, "kinds": KINDS, "files": names}) + "\n")
    return folder


def midi_files(folder: Path) -> list[Path]:
    return [folder / name for name in json.loads((folder / "files.json").read_text())["files"]]


# ---- 1. tokenising a folder, one process ----


def tokenise(paths: list[Path], repeat: int) -> dict[str, dict[str, float]]:
    """Per tokenizer: the best of `repeat` passes over the files (seconds), tokens, failures.
    The tokenizers take turns, so drifts in the machine's speed hit all of them."""
    from miditok import REMI, TSD

    items = [Item(source="bench", kind="midi", path=str(p), name=p.name, style="user")
             for p in paths]  # fmt: skip

    def music_lm() -> tuple[int, int]:
        tokens = failed = 0
        for item in items:
            encoding = encode_item(item, Path(item.path).read_bytes())
            tokens, failed = tokens + len(encoding.ids) // 2, failed + bool(encoding.error)
        return tokens, failed

    def miditok(name: str, cls: type) -> Callable[[], tuple[int, int]]:
        tokenizer = codec().miditok(name, cls)  # bytes -> symusic Score -> TokSequence

        def run() -> tuple[int, int]:
            tokens = failed = 0
            for path in paths:
                try:
                    tokens += len(tokenizer.encode(path.read_bytes()).ids)
                except Exception:  # a failure is counted, as music_lm's are
                    failed += 1
            return tokens, failed

        return run

    runs = {"music_lm": music_lm, "MidiTok REMI": miditok("MidiTok REMI", REMI),
            "MidiTok TSD": miditok("MidiTok TSD", TSD)}  # fmt: skip
    best: dict[str, dict[str, float]] = {}
    for n in range(repeat):
        for name, run in runs.items():
            gc.collect()
            start = time.perf_counter()
            tokens, failed = run()
            seconds = time.perf_counter() - start
            print(f"pass {n + 1}: {name}: {len(paths) / seconds:.1f} files/s", file=sys.stderr)
            if seconds < best.get(name, {}).get("seconds", float("inf")):
                best[name] = {"seconds": seconds, "tokens": tokens, "failed": failed}
    return best


# ---- 2. the datasets engine against the local one ----


def build_figures(result: BuildResult, seconds: float) -> dict[str, Any]:
    splits = result.manifest["splits"]
    return {
        "seconds": seconds,
        "encode_seconds": result.manifest["encode_seconds"],
        "pieces": {s: splits[s]["pieces"] for s in SPLITS},
        "tokens": {s: splits[s]["tokens"] for s in SPLITS},
        "failed": len(result.failures),
        "duplicates": len(result.duplicates),
        "encoded": result.encoded,
        "cached": result.cached,
    }


def engines(folder: Path, workers: int) -> dict[str, dict[str, Any]]:
    """The datasets engine, the local engine cold (fresh cache), the local one again over
    its cache; each into a fresh folder but the last, which updates the local one's."""
    import datasets

    from music_lm.corpus.hf_dataset import build_corpus_datasets

    datasets.disable_progress_bars()  # as the local builds below, which run without a bar
    config = BuildConfig(sources=(f"{folder}:bench",))
    # What a build does once per process, done before the first one is timed: the codec's
    # lazy imports, and the tokenizer's (transformers and torch, 1-2 s) to write the corpus.
    first = next(folder.glob("*.mid"))
    encode_item(Item("bench", "midi", str(first), first.name, "user"), first.read_bytes())
    importlib.import_module("music_lm.tokens.tokenizer")

    def hf(tmp: Path) -> BuildResult:
        return build_corpus_datasets(config, tmp / "datasets", workers, cache_dir=tmp / "hf")

    def local(tmp: Path) -> BuildResult:
        return build_corpus(config, tmp / "local", tmp / "cache", workers, progress=False)

    runs = {"datasets": hf, "local": local, "local again": local}
    figures = {}
    with tempfile.TemporaryDirectory(prefix="music-lm-bench-") as tmp:
        for name, run in runs.items():
            print(f"{name} build of {folder.name}, {processes(workers)}", file=sys.stderr)
            start = time.perf_counter()
            result = run(Path(tmp))
            figures[name] = build_figures(result, time.perf_counter() - start)
            print(f"  {figures[name]['seconds']:.1f} s", file=sys.stderr)
    return figures


# ---- 3. a full music21 build ----


def corpus_figures(folder: Path) -> dict[str, Any]:
    """The figures of a built corpus folder, from its manifest and its files."""
    manifest = json.loads((folder / "manifest.json").read_text())
    splits, sources = manifest["splits"], manifest["sources"]
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {
        "folder": str(folder),
        "built": manifest["built"],
        "music_lm": manifest["music_lm"],
        "sources": list(manifest["config"]["sources"]),
        "limit": manifest["config"].get("limit"),
        "engine": manifest.get("engine", {}),
        "build_seconds": manifest["build_seconds"],
        "encode_seconds": manifest["encode_seconds"],
        "listed": sum(s["listed"] for s in sources),
        "failed": sum(s["failed"] for s in sources),
        "duplicates": sum(s["duplicates"] for s in sources),
        "pieces": {s: splits[s]["pieces"] for s in SPLITS},
        "notes": {s: splits[s]["notes"] for s in SPLITS},
        "tokens": {s: splits[s]["tokens"] for s in SPLITS},
        "bytes": sum(p.stat().st_size for p in files),
        "shard_bytes": sum(p.stat().st_size for p in files if p.suffix == ".bin"),
        "shards": sum(p.suffix == ".bin" for p in files),
    }


def music21_build(source: str, limit: int, workers: int) -> dict[str, Any]:
    """`music-lm corpus build` of `source` into a temporary folder with a fresh cache."""
    exe = Path(sys.executable).with_name("music-lm")
    with tempfile.TemporaryDirectory(prefix="music-lm-bench-") as tmp:
        out, cache = Path(tmp) / "corpus", Path(tmp) / "cache"
        command = [str(exe), "corpus", "build", "-s", source, "-o", str(out), "--cache",
                   str(cache), "--no-progress", "-j", str(workers)]  # fmt: skip
        command += ["--max-pieces", str(limit)] if limit else []
        print("$ " + " ".join(command), file=sys.stderr)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        figures = corpus_figures(out)
    command[command.index("-o") + 1], command[command.index("--cache") + 1] = "TMP", "FRESH"
    return {**figures, "folder": None, "wall_seconds": wall, "command": " ".join(command[1:])}


def music21_recorded(path: Path) -> dict[str, Any]:
    """The figures of a finished build (its folder, or its manifest.json); the wall time is
    the manifest's build_seconds."""
    folder = path.parent if path.name == "manifest.json" else path
    figures = corpus_figures(folder.resolve())
    return {**figures, "wall_seconds": None, "command": None}


# ---- 4. a rebuild with nothing changed ----


def rebuild(folder: Path, repeat: int) -> dict[str, Any]:
    """Wall seconds of `music-lm corpus build` (whole process, one worker): the first build
    into a new folder with a fresh cache, and the same build again; best of `repeat`."""
    with tempfile.TemporaryDirectory() as tmp:
        out, cache = Path(tmp) / "corpus", Path(tmp) / "cache"
        command = [sys.executable, "-m", "music_lm.cli", "corpus", "build", "-s",
                   f"{folder}:gen", "-o", str(out), "--cache", str(cache), "-j", "1",
                   "--no-progress"]  # fmt: skip

        def timed(extra: tuple[str, ...] = ()) -> tuple[float, str]:
            start = time.perf_counter()
            done = subprocess.run([command[0], *extra, *command[1:]], capture_output=True,
                                  text=True, check=True)  # fmt: skip
            return time.perf_counter() - start, done.stderr

        first, again = float("inf"), float("inf")
        for n in range(repeat):
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            first = min(first, timed()[0])
            again = min(again, timed()[0])
            print(f"pass {n + 1}: first {first:.2f} s, again {again:.2f} s", file=sys.stderr)
        _, imports = timed(("-X", "importtime"))
        manifest = json.loads((out / "manifest.json").read_text())
    imported = re.search(r"\|\s+transformers$", imports, re.M) is not None
    return {"first_seconds": first, "again_seconds": again, "repeat": repeat,
            "transformers_imported": imported, "engine": manifest["engine"],
            "pieces": sum(manifest["splits"][s]["pieces"] for s in SPLITS)}  # fmt: skip


def rebuild_section(part: dict[str, Any]) -> list[str]:
    r = part["results"]
    share = r["again_seconds"] / r["first_seconds"]
    return [
        f"### 4. A rebuild with nothing changed, {part['files']} MIDI files",
        "",
        *part["environment"],
        f"- files: {part['files']} generated as in part 1 (seed {part['seed']}), one source. "
        "`music-lm corpus build -j 1` as a subprocess, whole-process wall time (start-up and "
        "imports included), the best of "
        f"{r['repeat']}: the first build (fresh encoding cache, new folder) against the same "
        "build run again into that folder. The rebuild encodes nothing and copies the "
        "tokenizer files of the corpus it replaces (same vocabulary, writer and transformers "
        "version), so it does not import transformers "
        f"(imported: {'yes' if r['transformers_imported'] else 'no'}, by `python -X "
        "importtime`). Goal (issue 22): the rebuild at most 0.3x the first build.",
        "",
        "| build | wall s | share of the first build |",
        "|---|---:|---:|",
        f"| first build ({r['pieces']} pieces kept) | {r['first_seconds']:.2f} | 1.00 |",
        f"| again, nothing changed | {r['again_seconds']:.2f} | {share:.2f} |",
        "",
    ]


# ---- the report ----


def environment(ran_on: str, packages: tuple[str, ...] = ()) -> list[str]:
    """bench/codec.py's lines (machine, date, versions, command), with how many processes
    ran (`ran_on`) and the versions of `packages` besides."""
    lines = codec().environment()
    lines[0] = lines[0].replace("one process", ran_on)
    if packages:
        lines.insert(3, "- also: " + ", ".join(f"{p} {meta.version(p)}" for p in packages))
    return lines


def processes(workers: int) -> str:
    return f"{workers} worker process" + "es" * (workers != 1)


def ratio(value: float, anchor: float, name: str) -> str:
    return f"{value / anchor:.2f}× {name}" if anchor else f"- × {name}"


def per_split(counts: dict[str, int]) -> str:
    return " / ".join(f"{counts[s]:,}" for s in SPLITS) + f" ({sum(counts.values()):,})"


def tokenise_section(part: dict[str, Any]) -> list[str]:
    files, figures = part["files"], part["results"]
    names = list(figures)
    anchors = [n for n in names if n != "music_lm"]

    def row(label: str, value: Callable[[dict[str, float]], float], spec: str) -> str:
        cells = []
        for name in names:
            cell = format(value(figures[name]), spec)
            if name == "music_lm":
                short = [ratio(value(figures[name]), value(figures[a]), a.split()[-1])
                         for a in anchors]  # fmt: skip
                cell += f" ({', '.join(short)})"
            cells.append(cell)
        return f"| {label} | " + " | ".join(cells) + " |"

    return [
        f"### 1. Tokenising a folder of {files:,} MIDI files: music_lm against MidiTok",
        "",
        *part["environment"],
        f"- files: {files:,} generated by bench/corpus.py (seed {part['seed']}), "
        f"{part['bytes'] / MIB:.1f} MiB, these kinds in turn: {', '.join(part['kinds'])}. "
        "melody: one instrument on the grid, as notation software writes it; chords: played "
        "block chords (jittered, overlapping) over a bass line; band: bench/codec.py's "
        "human_file (played, 1-3 instruments and drums, a tempo change); band-format0: the "
        "same in one track (format 0). PPQ 96 to 960.",
        "- What is timed: file by file in one process, reading the file included, the best of "
        f"{part['repeat']} passes (garbage collection on, as in a build). music_lm: "
        "`music_lm.corpus.encoding.encode_item`, a corpus build's work per file (grid, encode, "
        "token ids). MidiTok (the anchor; music_lm's ratios to it in brackets): symusic Score from "
        "the bytes, `tokenizer.encode` to ids, with bench/codec.py's configuration (REMI and "
        "TSD, programs, tempos, meters, one stream, music_lm's 1/24 grid). A file that raises "
        "(MidiTok) or returns an error (music_lm) counts as failed; tokens/file is per file "
        "tokenised.",
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        row("files/s", lambda f: files / f["seconds"], ".1f"),
        row("ms/file", lambda f: 1000 * f["seconds"] / files, ".2f"),
        row("tokens/file", lambda f: f["tokens"] / max(files - f["failed"], 1), ".0f"),
        "| failed files | " + " | ".join(str(figures[n]["failed"]) for n in names) + " |",
        "",
    ]


def datasets_section(part: dict[str, Any]) -> list[str]:
    files, runs, workers = part["files"], part["results"], part["workers"]
    cold = runs["local"]
    labels = {
        "datasets": f"datasets engine (Dataset.map, num_proc={workers})",
        "local": f"local engine ({processes(workers)}), cold cache: the anchor",
        "local again": "local engine again, same cache and output (nothing changed)",
    }
    lines = [
        f"### 2. The datasets engine on {files:,} MIDI files, against the local engine",
        "",
        *part["environment"],
        f"- files: {files:,} generated as in part 1 (seed {part['seed']}), one source. Each "
        "figure is one build call, from listing the folder to the corpus folder written: files/s "
        "is files / wall seconds of the call. The anchor is the local engine "
        "(`music_lm.corpus.build.build_corpus`) in the same run, same files and workers, with a "
        "fresh encoding cache; then it runs again over that cache, which encodes nothing (the "
        "incremental build). The datasets engine starts from a fresh Arrow cache too, and "
        "also writes Parquet shards. "
        "What a build imports once per process (the codec's modules; transformers and torch, "
        "for the tokenizer files) is imported before the first build, so no engine pays it "
        "for the others.",
        "",
        "| build | files/s | wall s | encoding s | pieces train / valid / test (all) | tokens "
        "(all) | failed | duplicates | encoded / from cache |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in runs.items():
        rate = f"{files / run['seconds']:.1f}"
        if name != "local":
            rate += f" ({ratio(cold['seconds'], run['seconds'], 'cold local')})"
        lines.append(
            f"| {labels.get(name, name)} | {rate} | {run['seconds']:.2f} | "
            f"{run['encode_seconds']:.2f} | {per_split(run['pieces'])} | "
            f"{sum(run['tokens'].values()):,} | {run['failed']} | {run['duplicates']} | "
            f"{run['encoded']:,} / {run['cached']:,} |"
        )
    return [*lines, ""]


def music21_section(part: dict[str, Any]) -> list[str]:
    r = part["results"]
    listed, kept = r["listed"], sum(r["pieces"].values())
    tokens, wall = sum(r["tokens"].values()), r["wall_seconds"] or r["build_seconds"]
    if r["wall_seconds"] is None:
        how = (f"recorded from the finished build in {r['folder']} (built {r['built']}); the "
               "wall time is the manifest's build_seconds (listing to folder written, without "
               "the process's start-up); whether its cache was empty cannot be told from the "
               "manifest")  # fmt: skip
    else:
        how = (f"`music-lm {r['command']}` run by this script with an empty cache; the wall "
               f"time is the whole subprocess (the manifest's build_seconds: "
               f"{r['build_seconds']:.1f} s)")  # fmt: skip
    limit = f", at most {r['limit']} pieces per source" if r.get("limit") else ""
    engine = r.get("engine") or {}
    minutes = f" ({wall / 60:.1f} min)" if wall >= 120 else ""
    return [
        f"### 3. A music21 build ({', '.join(r['sources'])}{limit})",
        "",
        *part["environment"],
        f"- {how}; engine {engine.get('name', '?')}, {processes(engine.get('workers', 0))}, "
        f"music_lm {r['music_lm']}. Failed and duplicate pieces are shares of the pieces "
        "listed; the shards (*.bin, uint16 token ids) are a share of the folder (shards, "
        "index, Parquet if any, tokenizer, lists).",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| wall time | {wall:.1f} s{minutes} |",
        f"| pieces listed | {listed:,} ({listed / wall:.1f} pieces/s) |",
        f"| pieces kept: train / valid / test (all) | {per_split(r['pieces'])} |",
        f"| notes: train / valid / test (all) | {per_split(r['notes'])} |",
        f"| tokens: train / valid / test (all) | {per_split(r['tokens'])} |",
        f"| tokens per kept piece | {tokens / max(kept, 1):,.0f} |",
        f"| failed | {r['failed']:,} ({r['failed'] / max(listed, 1):.1%}) |",
        f"| duplicates dropped | {r['duplicates']:,} ({r['duplicates'] / max(listed, 1):.1%}) |",
        f"| folder size | {r['bytes'] / MIB:.2f} MiB |",
        f"| shards ({r['shards']} *.bin files) | {r['shard_bytes'] / MIB:.2f} MiB "
        f"({r['shard_bytes'] / max(r['bytes'], 1):.0%} of the folder) |",
        "",
    ]


def render(results: dict[str, Any], source: Path) -> str:
    shown = source.relative_to(ROOT) if source.resolve().is_relative_to(ROOT) else source
    lines = [SECTION, "", f"Written by `python bench/corpus.py` from {shown} (each part keeps "
             "its figures until it is run again).", ""]  # fmt: skip
    for name, section in (("tokenise", tokenise_section), ("datasets", datasets_section),
                          ("music21", music21_section), ("rebuild", rebuild_section)):  # fmt: skip
        if name in results:
            lines += section(results[name])
        else:
            lines += [f"- {name}: not measured yet (`python bench/corpus.py --only {name}`)", ""]
    return "\n".join(lines)


def write_section(out: Path, title: str, text: str) -> None:
    """Replace the `title` section of `out` (or append it), leaving the other sections as
    they are (bench/codec.py's write_section, which has its own title fixed)."""
    old = out.read_text() if out.exists() else "# Benchmark results\n"
    body = text.rstrip("\n") + "\n\n"  # a blank line before the next section
    section = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    new = section.sub(lambda _: body, old) if section.search(old) else f"{old.rstrip()}\n\n{body}"
    out.write_text(new.rstrip("\n") + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parts = ap.add_argument_group("what to measure (default: tokenise and datasets)")
    parts.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=[],
        metavar="PART",
        help=f"measure these parts only: {', '.join(PARTS)}",
    )
    parts.add_argument(
        "--music21",
        action="store_true",
        help="measure part 3, a full music21 build (long); same as --only "
        "music21, or add it to the parts --only names",
    )
    parts.add_argument(
        "--music21-manifest",
        type=Path,
        metavar="PATH",
        help="part 3 from an already finished build (its folder or its "
        "manifest.json) instead of building: the wall time is its "
        "build_seconds",
    )
    parts.add_argument(
        "--render", action="store_true", help="measure nothing: rewrite the section from the JSON"
    )
    sizes = ap.add_argument_group("sizes and settings")
    sizes.add_argument(
        "--files", type=int, default=2000, metavar="N", help="part 1: files (default 2000)"
    )
    sizes.add_argument(
        "--datasets-files",
        type=int,
        default=10_000,
        metavar="N",
        help="part 2: files (default 10000)",
    )
    sizes.add_argument(
        "--rebuild-files", type=int, default=80, metavar="N", help="part 4: files (default 80)"
    )
    sizes.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the generated files (default 0)"
    )
    sizes.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="N",
        help="part 1: passes, the best counts (default 3)",
    )
    sizes.add_argument(
        "--workers",
        "-j",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help=f"parts 2 and 3: worker processes (default: all cores, {os.cpu_count()})",
    )
    sizes.add_argument(
        "--music21-source",
        default="music21",
        metavar="SOURCE",
        help="part 3: the source to build (default music21; e.g. music21:bach for a quick test)",
    )
    sizes.add_argument(
        "--music21-limit",
        type=int,
        default=0,
        metavar="N",
        help="part 3: at most this many pieces per source (0: all)",
    )
    files = ap.add_argument_group("files")
    files.add_argument(
        "--out",
        type=Path,
        default=BENCH / "RESULTS.md",
        metavar="FILE",
        help="markdown file whose section is written (default bench/RESULTS.md)",
    )
    files.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        metavar="FILE",
        help="the raw figures, JSON (default bench/corpus_results.json)",
    )
    args = ap.parse_args()

    chosen = set(args.only) | ({"music21"} if args.music21 or args.music21_manifest else set())
    chosen = set() if args.render else chosen or {"tokenise", "datasets"}
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    workers = max(1, args.workers)
    if "tokenise" in chosen:
        folder = generated_folder(args.files, args.seed, workers)
        paths = midi_files(folder)
        results["tokenise"] = {
            "environment": environment("one process"),
            "files": len(paths),
            "bytes": sum(p.stat().st_size for p in paths),
            "seed": args.seed,
            "kinds": list(KINDS),
            "repeat": args.repeat,
            "results": tokenise(paths, args.repeat),
        }
    if "datasets" in chosen:
        folder = generated_folder(args.datasets_files, args.seed, workers)
        results["datasets"] = {
            "environment": environment(processes(workers), ("datasets",)),
            "files": len(midi_files(folder)),
            "seed": args.seed,
            "workers": workers,
            "results": engines(folder, workers),
        }
    if "rebuild" in chosen:
        folder = generated_folder(args.rebuild_files, args.seed, workers)
        results["rebuild"] = {
            "environment": environment(processes(1)),
            "files": len(midi_files(folder)),
            "seed": args.seed,
            "results": rebuild(folder, args.repeat),
        }
    if "music21" in chosen:
        if args.music21_manifest:
            figures = music21_recorded(args.music21_manifest)
        else:
            figures = music21_build(args.music21_source, args.music21_limit, workers)
        workers_used = figures["engine"].get("workers", workers)
        results["music21"] = {
            "environment": environment(processes(workers_used), ("music21",)),
            "results": figures,
        }
    if chosen:
        args.results.write_text(json.dumps(results, indent=2) + "\n")
    text = render(results, args.results.resolve())
    print(text)
    write_section(args.out, SECTION, text)


if __name__ == "__main__":
    main()
