"""Build a training corpus: sources -> token ids in uint16 shards, an index and a manifest.

    music-lm corpus build --source music21 --source ~/midi/jigs:irish -o data/corpus
    music-lm corpus build --source music21 --source debian:simutrans-data -o data/corpus

The steps, each deterministic:

1. list the pieces of every source (`music_lm.corpus.sources`; a Debian package is
   fetched and unpacked into its own cache first, `music_lm.corpus.debian`);
2. encode each piece with the codec (`music_lm.corpus.encoding`), on all cores, through a
   cache keyed by the file's content (`music_lm.corpus.cache`: a second build encodes
   only what changed; an interrupted one resumes); a piece that fails is listed with its
   reason, never fatal;
3. drop duplicates: a piece whose notes equal an earlier piece's, also when
   transposed (the first one in source order is kept; `music_lm.corpus.split`);
4. split by piece, by a hash of its content: train, validation, test (a piece and
   its transposed copies always land in one split; every source of 3 pieces or more
   has a test piece, of 4 or more a validation piece too);
5. write the token ids of each split as uint16 shards, `index.jsonl` (one line per
   piece: where it is, its source, style, and how far it may be transposed),
   `manifest.json` (counts per source and split, settings, build time), the
   failure and duplicate lists, and the Hugging Face tokenizer (`music_lm.corpus.write`).

This module runs the steps: the listing, the pool of worker processes, the build.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from music_lm.corpus.cache import CacheView, EncodingCache, content_keys, default_cache_dir
from music_lm.corpus.config import BuildConfig
from music_lm.corpus.encoding import Encoding, encode_chunk, encode_job, quiet_worker
from music_lm.corpus.sources import CorpusError, Item, Source, list_items, parse_source
from music_lm.corpus.split import assemble, piece_ids
from music_lm.corpus.write import check_output, write_corpus

TASKS_PER_WORKER = 200  # chunks a worker process encodes before a fresh one takes over


@dataclass
class BuildResult:
    """What a build did, for the CLI's summary."""

    out: Path
    manifest: dict
    failures: list[tuple[str, str]]
    duplicates: list[tuple[str, str]]
    encoded: int
    cached: int


def _progress(total: int, desc: str, enabled: bool | None):
    # tqdm only when a progress bar is shown
    from tqdm import tqdm

    # enabled None: a bar when stderr is a terminal (tqdm's own rule), none in logs
    disable = None if enabled is None else not enabled
    return tqdm(total=total, desc=desc, unit="piece", disable=disable, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.05)  # fmt: skip


def encode_all(
    jobs: list[tuple[str, Item, bool]],
    workers: int,
    on_result: Callable[[str, Encoding], None],
    progress: bool | None = None,
) -> None:
    """Encode every job (key, item, sustain), on `workers` processes, in any order."""
    if not jobs:
        return
    bar = _progress(len(jobs), "encoding", progress)
    with bar:
        if workers <= 1:
            for job in jobs:
                on_result(*encode_job(job))
                bar.update()
            return
        # spawn, not fork: the parent may hold threads (the progress bar's) and
        # music21's caches; each worker starts clean. Workers are replaced every
        # TASKS_PER_WORKER chunks by starting a fresh executor: music21 keeps caches
        # that grow. (Not with max_tasks_per_child: on CPython 3.11 an executor that
        # replaces its workers can hang for good once the first worker retires.)
        # An executor, not a Pool: a worker that dies (out of memory) stops the build
        # with an error instead of a hang.
        context = multiprocessing.get_context("spawn")
        # small chunks: pieces differ 1,000-fold in work, and the bar moves smoothly
        size = max(1, min(8, len(jobs) // (workers * 64)))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        per_pool = TASKS_PER_WORKER * workers
        for start in range(0, len(chunks), per_pool):
            batch = chunks[start : start + per_pool]
            with ProcessPoolExecutor(workers, context, initializer=quiet_worker) as pool:
                try:
                    for future in as_completed([pool.submit(encode_chunk, c) for c in batch]):
                        for key, enc in future.result():
                            on_result(key, enc)
                            bar.update()
                except BrokenProcessPool:
                    raise CorpusError(
                        "a worker process died while encoding (out of memory?); what was "
                        "encoded is cached: build again to go on from there"
                    ) from None


def _longest_first(jobs: list[tuple[str, Item, bool]]) -> list[tuple[str, Item, bool]]:
    """Jobs by expected work, largest first (file size, shared among the tunes of an ABC
    file), so that no worker is left with a string quartet when the others are done."""
    tunes = Counter(item.path for _, item, _ in jobs)
    sizes: dict[str, float] = {}
    for path, count in tunes.items():
        try:
            sizes[path] = os.path.getsize(path) / count
        except OSError:
            sizes[path] = 0.0
    return sorted(jobs, key=lambda job: -sizes[job[1].path])


def build_corpus(
    config: BuildConfig,
    out: Path,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda _message: None,
    debian_dir: Path | None = None,
) -> BuildResult:
    """Build (or update) the corpus folder `out` from the configured sources (Debian
    packages fetched into `debian_dir`, by default `debian.default_cache_dir()`)."""
    started = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    check_output(out)
    sources, items = list_sources(config, log, debian_dir)
    keys = content_keys(items)
    cache = EncodingCache(cache_dir or default_cache_dir())
    try:
        sustain_tag = "+sustain" if config.sustain else ""
        keys = [None if k is None else f"{k}{sustain_tag}" for k in keys]
        known = cache.known(k for k in set(keys) if k)
        cached = len(known)
        todo: dict[str, Item] = {}
        for item, key in zip(items, keys, strict=True):
            if key and key not in known:
                todo.setdefault(key, item)
        log(f"{cached} encodings from the cache, {len(todo)} to encode")
        transient: dict[str, Encoding] = {}
        done = 0

        def keep(key: str, enc: Encoding) -> None:
            nonlocal done
            if enc.transient:  # reported now, tried again next time
                transient[key] = enc
                return
            cache.put(key, enc)
            done += 1
            if done % 200 == 0:
                cache.commit()

        jobs = [(key, item, config.sustain) for key, item in todo.items()]
        encode_all(_longest_first(jobs), workers, keep, progress)
        cache.commit()
        encode_seconds = time.perf_counter() - started
        # every piece's ids are read from the cache when needed, never all at once
        results = CacheView(cache, transient)
        pieces, piece_keys, failures, duplicates = assemble(items, keys, results, config)
        if not pieces:
            raise CorpusError(f"{out}: none of the {len(items)} pieces could be encoded")

        def fetch(index: int) -> np.ndarray:
            return piece_ids(results[piece_keys[index]], pieces[index].style)

        counts = {"encoded": len(todo), "cached": cached}
        manifest = write_corpus(out, config, sources, items, pieces, fetch, failures,
                                duplicates, encode_seconds, started, engine="local",
                                workers=workers, counts=counts)  # fmt: skip
    finally:
        cache.close()
    return BuildResult(out, manifest, failures, duplicates, len(todo), cached)


def list_sources(
    config: BuildConfig, log=lambda _m: None, debian_dir: Path | None = None
) -> tuple[list[Source], list[Item]]:
    """The sources of a build and their pieces, in order (limited by config.limit)."""
    sources = [parse_source(spec) for spec in config.sources]
    labels = [s.tag for s in sources]
    if len(set(labels)) < len(labels):
        raise CorpusError(
            f"two sources share the tag {Counter(labels).most_common(1)[0][0]!r} "
            f"({', '.join(config.sources)}): tag folders with DIR:TAG, and name several "
            f"music21 collections in one source (music21:bach,irish)"
        )
    items: list[Item] = []
    for source in sources:
        found = list_items(source, debian_dir)
        if not found:
            log(f"warning: source {source.spec()} has no pieces")
        if config.limit and len(found) > config.limit:  # spread over the whole source
            found = found[:: len(found) // config.limit][: config.limit]
        items += found
    if not items:
        raise CorpusError(f"{', '.join(config.sources)}: no MIDI files or pieces found")
    log(f"{len(items)} pieces listed from {len(sources)} source(s)")
    return sources, items
