"""Build a training corpus: sources -> token ids in uint16 shards, an index and a manifest.

    music-lm corpus build --source music21 --source ~/midi/jigs:irish -o data/corpus

The steps, each deterministic:

1. list the pieces of every source (`music_lm.corpus.sources`);
2. encode each piece with the codec, on all cores, through a cache keyed by the
   file's content (a second build encodes only what changed; an interrupted one
   resumes); a piece that fails is listed with its reason, never fatal;
3. drop duplicates: a piece whose notes equal an earlier piece's, also when
   transposed (the first one in source order is kept);
4. split by piece, by a hash of its content: train, validation, test (a piece and
   its transposed copies always land in one split);
5. write the token ids of each split as uint16 shards, `index.jsonl` (one line per
   piece: where it is, its source, style, and how far it may be transposed),
   `manifest.json` (counts per source and split, settings, build time), the
   failure and duplicate lists, and the Hugging Face tokenizer.

The folder is written next to its final place and moved in when complete, so a
failed or interrupted build leaves the previous corpus as it was.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from music_lm.corpus.dataset import CORPUS_FORMAT, SPLITS, Piece
from music_lm.corpus.sources import (
    CorpusError,
    Item,
    Source,
    content_key,
    item_midi,
    list_items,
    parse_source,
)
from music_lm.midi.instruments import transpose_limits
from music_lm.tokens.vocab import VOCAB

CORPUS_VERSION = 1
# Bump when the codec's output for the same file changes: old cache entries are then unused.
ENCODER_VERSION = "codec-1"
TOKEN_DTYPE = np.uint16
MANIFEST = "manifest.json"
INDEX = "index.jsonl"
FAILURES = "failures.tsv"
DUPLICATES = "duplicates.tsv"
DEFAULT_SHARD_TOKENS = 8 * 1024 * 1024  # 16 MiB per shard: small enough to move around

_PITCH = VOCAB.ranges["pitch"]
_KEY = VOCAB.ranges["key"]
_STYLE_POSITION = 1  # "piece style:X ...": the style word is always the second token


@dataclass(frozen=True)
class BuildConfig:
    """Settings of a build, saved in the manifest."""

    sources: tuple[str, ...]
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    seed: int = 0
    sustain: bool = False
    dedup: bool = True
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    limit: int | None = None  # at most this many pieces per source (quick builds)

    def __post_init__(self) -> None:
        if not self.sources:
            raise CorpusError("no sources: give --source music21 or --source DIR[:TAG]")
        held_out = self.valid_fraction + self.test_fraction
        if min(self.valid_fraction, self.test_fraction) < 0 or held_out >= 1:
            raise CorpusError(
                f"split fractions must be >= 0 and leave some training data: valid "
                f"{self.valid_fraction}, test {self.test_fraction}"
            )
        if self.shard_tokens < 1024:
            raise CorpusError(f"shard size must be at least 1024 tokens, got {self.shard_tokens}")


@dataclass
class Encoding:
    """What the codec made of one file: token ids, or the reason it failed."""

    ids: bytes = b""  # uint16, little-endian
    notes: int = 0
    # (program, is_drum, lowest pitch, highest pitch) per track
    tracks: list[tuple[int, bool, int, int]] = field(default_factory=list)
    error: str = ""
    transient: bool = False  # a failure that may not happen again: never cached


@dataclass
class BuildResult:
    """What a build did, for the CLI's summary."""

    out: Path
    manifest: dict
    failures: list[tuple[str, str]]
    duplicates: list[tuple[str, str]]
    encoded: int
    cached: int


# ---- encoding one item (runs in worker processes) ----


def encode_item(item: Item, data: bytes, sustain: bool = False) -> Encoding:
    """Encode one piece; any failure becomes Encoding(error=...)."""
    from music_lm.api import encode_midi
    from music_lm.tokens.grammar import words_to_ids

    try:
        midi = data if item.kind == "midi" else item_midi(item)
        encoded = encode_midi(midi, name=item.name, sustain=sustain)
    except Exception as err:  # a bad file is reported, never fatal
        message = str(err).replace(f"{item.name}: ", "").replace("\n", " ").strip()
        transient = isinstance(err, (MemoryError, OSError))
        return Encoding(error=f"{type(err).__name__}: {message}"[:300], transient=transient)
    grid = encoded.grid
    if not grid.note_count:
        return Encoding(error="no notes")
    tracks = []
    for track in grid.tracks:
        pitches = [n.pitch for n in track.notes]
        tracks.append((track.program, track.is_drum, min(pitches), max(pitches)))
    ids = np.asarray(words_to_ids(encoded.text.split()), dtype="<u2")
    return Encoding(ids.tobytes(), grid.note_count, tracks)


def _encode_job(job: tuple[str, Item, bool]) -> tuple[str, Encoding]:
    key, item, sustain = job
    try:
        data = b"" if item.kind != "midi" else Path(item.path).read_bytes()
    except OSError as err:
        return key, Encoding(error=f"cannot read: {err.strerror or err}", transient=True)
    if item.kind == "midi" and not key.startswith(content_key(item, data)):
        # the file changed since the build hashed it: its encoding would be cached under
        # the old content's key
        return key, Encoding(error="changed during the build: build again", transient=True)
    return key, encode_item(item, data, sustain)


TASKS_PER_WORKER = 200  # chunks a worker process encodes before a fresh one takes over


def _encode_chunk(jobs: list[tuple[str, Item, bool]]) -> list[tuple[str, Encoding]]:
    return [_encode_job(job) for job in jobs]


# ---- the content-keyed cache ----


def default_cache_dir() -> Path:
    """$MUSIC_LM_CACHE, else $XDG_CACHE_HOME/music_lm, else ~/.cache/music_lm."""
    if os.environ.get("MUSIC_LM_CACHE"):
        return Path(os.environ["MUSIC_LM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "music_lm"


class EncodingCache:
    """Encodings by content key, in one SQLite file (written by the main process only)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # ids mean something only under one vocabulary: a cache per vocabulary
        self.path = folder / f"corpus-{ENCODER_VERSION}-{VOCAB.sha256[:12]}.sqlite"
        self._db = sqlite3.connect(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS encodings (key TEXT PRIMARY KEY, ids BLOB, "
            "notes INTEGER, tracks TEXT, error TEXT)"
        )

    def known(self, keys: Iterable[str]) -> set[str]:
        """Which of `keys` the cache holds."""
        found: set[str] = set()
        keys = list(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key FROM encodings WHERE key IN ({marks})", chunk)
            found.update(key for (key,) in rows)
        return found

    def get(self, key: str) -> Encoding | None:
        row = self._db.execute(
            "SELECT ids, notes, tracks, error FROM encodings WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        ids, notes, tracks, error = row
        return Encoding(ids, notes, [tuple(t) for t in json.loads(tracks)], error)

    def put(self, key: str, enc: Encoding) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO encodings VALUES (?, ?, ?, ?, ?)",
            (key, enc.ids, enc.notes, json.dumps(enc.tracks), enc.error),
        )

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.commit()
        self._db.close()


# ---- dedup and split ----


def fingerprint(ids: np.ndarray) -> str:
    """A hash of a piece's tokens that ignores its style and its transposition: the
    pitches are shifted so the lowest is 0 and key signatures keep only their mode."""
    ids = ids.astype(np.int32)  # a copy
    ids[_STYLE_POSITION] = 0
    # normalised pitches and modes are numbered past the vocabulary: they never equal a token
    pitched = (ids >= _PITCH.start) & (ids < _PITCH.stop)
    if pitched.any():
        ids[pitched] += len(VOCAB) - ids[pitched].min()
    keyed = (ids >= _KEY.start) & (ids < _KEY.stop)
    ids[keyed] = 2 * len(VOCAB) + (ids[keyed] - _KEY.start) // 15  # major, minor
    return hashlib.blake2b(ids.tobytes(), digest_size=16).hexdigest()


def split_of(fingerprint_hex: str, config: BuildConfig) -> str:
    """train / valid / test from the piece's content hash (stable as the corpus grows)."""
    digest = hashlib.blake2b(f"{config.seed}:{fingerprint_hex}".encode(), digest_size=8)
    u = int.from_bytes(digest.digest(), "big") / 2**64
    if u < config.valid_fraction:
        return "valid"
    if u < config.valid_fraction + config.test_fraction:
        return "test"
    return "train"


def transpose_range(tracks: Iterable[tuple[int, bool, int, int]]) -> tuple[int, int]:
    """Semitone shifts that keep every melodic track inside its instrument's range."""
    down, up = -127, 127
    melodic = False
    for program, is_drum, low, high in tracks:
        if is_drum:
            continue
        melodic = True
        lo, hi = transpose_limits(program, low, high)
        down, up = max(down, lo), min(up, hi)
    return (down, up) if melodic else (0, 0)


# ---- the build ----


def _progress(total: int, desc: str, enabled: bool | None):
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
                on_result(*_encode_job(job))
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
            with ProcessPoolExecutor(workers, context, initializer=_quiet_worker) as pool:
                try:
                    for future in as_completed([pool.submit(_encode_chunk, c) for c in batch]):
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


def _quiet_worker() -> None:
    import warnings

    warnings.simplefilter("ignore")


def build_corpus(
    config: BuildConfig,
    out: Path,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda _message: None,
) -> BuildResult:
    """Build (or update) the corpus folder `out` from the configured sources."""
    started = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    _check_output(out)
    sources, items = list_sources(config, log)
    keys = _content_keys(items)
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
        results = _CacheView(cache, transient)
        pieces, piece_keys, failures, duplicates = _assemble(items, keys, results, config)
        if not pieces:
            raise CorpusError(f"{out}: none of the {len(items)} pieces could be encoded")

        def fetch(index: int) -> np.ndarray:
            return piece_ids(results[piece_keys[index]], pieces[index].style)

        counts = {"encoded": len(todo), "cached": cached}
        manifest = _write_corpus(out, config, sources, items, pieces, fetch, failures,
                                 duplicates, encode_seconds, started, engine="local",
                                 workers=workers, counts=counts)  # fmt: skip
    finally:
        cache.close()
    return BuildResult(out, manifest, failures, duplicates, len(todo), cached)


class _CacheView(Mapping):
    """The encodings of a build, read from the cache one at a time (plus this run's
    transient failures, which are not cached)."""

    def __init__(self, cache: EncodingCache, extra: dict[str, Encoding]) -> None:
        self.cache, self.extra = cache, extra

    def __getitem__(self, key: str) -> Encoding:
        enc = self.extra.get(key) or self.cache.get(key)
        if enc is None:
            raise KeyError(key)
        return enc

    def __iter__(self) -> Iterator[str]:
        raise TypeError("the cache view is read by key only")

    def __len__(self) -> int:
        raise TypeError("the cache view is read by key only")


def list_sources(config: BuildConfig, log=lambda _m: None) -> tuple[list[Source], list[Item]]:
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
        found = list_items(source)
        if not found:
            log(f"warning: source {source.spec()} has no pieces")
        if config.limit and len(found) > config.limit:  # spread over the whole source
            found = found[:: len(found) // config.limit][: config.limit]
        items += found
    if not items:
        raise CorpusError(f"{', '.join(config.sources)}: no MIDI files or pieces found")
    log(f"{len(items)} pieces listed from {len(sources)} source(s)")
    return sources, items


# What a build writes: an existing corpus folder holding anything else is not replaced.
CORPUS_FILES = re.compile(
    r"(train|valid|test)-\d{3}\.bin|index\.jsonl|manifest\.json|failures\.tsv|"
    r"duplicates\.tsv|tokenizer(_config)?\.json|special_tokens_map\.json|stats\.png|parquet"
)


def _check_output(out: Path) -> None:
    """`out` may be new, empty, or a corpus an earlier build wrote (it is then rebuilt):
    a build never removes what it did not write."""
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != CORPUS_FORMAT:
        raise CorpusError(f"{out}: folder is not empty and holds no corpus; choose another -o")
    foreign = sorted(p.name for p in out.iterdir() if not CORPUS_FILES.fullmatch(p.name))
    if foreign:
        raise CorpusError(
            f"{out}: holds files a build does not write ({', '.join(foreign[:3])}): move "
            f"them away or choose another -o"
        )


def _content_keys(items: list[Item]) -> list[str | None]:
    """Content key per item (None when the file cannot be read: reported later). The tunes
    of an ABC file are consecutive items, so the last file read is all there is to reuse."""
    keys: list[str | None] = []
    last_path, data = None, None
    for item in items:
        if item.path != last_path:
            try:
                data = Path(item.path).read_bytes()
            except OSError:
                data = None
            last_path = item.path
        keys.append(None if data is None else f"{content_key(item, data)}|{ENCODER_VERSION}")
    return keys


def _unreadable(path: str) -> str:
    try:
        Path(path).read_bytes()
    except OSError as err:
        return f"cannot read: {err.strerror or err}"
    return "cannot read the file"


def _assemble(items, keys, results, config):
    """Pieces in source order, duplicates and failures set aside, splits assigned; with
    each piece's cache key (its ids are fetched again when the shards are written, so
    that no more than one piece's ids are held at a time)."""
    pieces: list[Piece] = []
    piece_keys: list[str] = []
    failures: list[tuple[str, str]] = []
    duplicates: list[tuple[str, str]] = []
    first_by_print: dict[str, str] = {}
    for item, key in zip(items, keys, strict=True):
        label = f"{item.source}:{item.name}"
        enc = results.get(key) if key else Encoding(error=_unreadable(item.path))
        if enc is None or enc.error:
            failures.append((label, enc.error if enc else "not encoded"))
            continue
        ids = piece_ids(enc, item.style)
        print_hex = fingerprint(ids)
        if config.dedup and print_hex in first_by_print:
            duplicates.append((label, first_by_print[print_hex]))
            continue
        first_by_print[print_hex] = label
        split = split_of(print_hex, config)
        pieces.append(Piece(item.name, item.source, item.style, split, len(ids), enc.notes,
                            transpose_range(enc.tracks), print_hex))  # fmt: skip
        piece_keys.append(key)
    _ensure_held_out(pieces, config)
    return pieces, piece_keys, failures, duplicates


def piece_ids(enc: Encoding, style: str) -> np.ndarray:
    """The token ids of an encoding, with the piece's style word."""
    ids = np.frombuffer(enc.ids, dtype="<u2").astype(TOKEN_DTYPE)  # a copy
    ids[_STYLE_POSITION] = VOCAB.id_of("style", style)
    return ids


def _ensure_held_out(pieces: list[Piece], config: BuildConfig) -> None:
    """A tiny corpus may hash no piece into a held-out split: then the training pieces
    whose hash came closest go there, so every split asked for has a piece."""
    for split, fraction in (("valid", config.valid_fraction), ("test", config.test_fraction)):
        train = [p for p in pieces if p.split == "train"]
        if fraction > 0 and len(train) >= 3 and not any(p.split == split for p in pieces):
            chosen = min(train, key=lambda p: _hash_unit(p.fingerprint, config.seed))
            for piece in train:  # its copies too, when duplicates are kept
                if piece.fingerprint == chosen.fingerprint:
                    piece.split = split


def _hash_unit(print_hex: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{print_hex}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _write_corpus(
    out,
    config,
    sources,
    items,
    pieces,
    fetch,
    failures,
    duplicates,
    encode_seconds,
    started,
    extra=None,
    engine="local",
    workers=1,
    counts=None,
) -> dict:
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private; a corpus is not
    try:
        shards = _write_shards(staging, pieces, fetch, config.shard_tokens)
        with open(staging / INDEX, "w", encoding="utf-8") as f:
            for piece in pieces:
                row = asdict(piece)
                row["transpose"] = list(piece.transpose)
                f.write(json.dumps(row, separators=(",", ":")) + "\n")
        _write_tsv(staging / FAILURES, ("piece", "reason"), failures)
        _write_tsv(staging / DUPLICATES, ("piece", "duplicate of"), duplicates)
        from music_lm.tokens.tokenizer import save_tokenizer

        save_tokenizer(staging)
        if extra is not None:
            extra(staging)
        manifest = _manifest(config, sources, items, pieces, failures, duplicates, shards,
                             encode_seconds, time.perf_counter() - started)  # fmt: skip
        manifest["engine"] = {"name": engine, "workers": workers, **(counts or {})}
        manifest = json.loads(json.dumps(manifest))  # as it reads back: lists, not tuples
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_shards(
    folder: Path, pieces: list[Piece], fetch: Callable[[int], np.ndarray], shard_tokens: int
) -> list[dict]:
    """Per split, write pieces back to back into shards of at most shard_tokens (a longer
    piece gets a shard of its own); record each piece's shard and offset."""
    shards: list[dict] = []
    for split in SPLITS:
        handle, size = None, 0
        for index, piece in enumerate(pieces):
            if piece.split != split:
                continue
            if handle is None or (size and size + piece.tokens > shard_tokens):
                if handle is not None:
                    handle.close()
                    shards[-1]["tokens"] = size
                name = f"{split}-{sum(s['split'] == split for s in shards):03d}.bin"
                shards.append({"name": name, "split": split, "tokens": 0})
                handle, size = open(folder / name, "wb"), 0  # noqa: SIM115
            piece.shard, piece.offset = shards[-1]["name"], size
            try:
                handle.write(fetch(index).astype("<u2").tobytes())
            except BaseException:
                handle.close()
                raise
            size += piece.tokens
        if handle is not None:
            handle.close()
            shards[-1]["tokens"] = size
    return shards


def _write_tsv(path: Path, header: tuple[str, str], rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(cell.replace("\t", " ") for cell in row) + "\n")


def _swap_in(staging: Path, out: Path) -> None:
    """Put the new corpus in place; the old one (if any) is removed only after."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)  # the previous corpus, back in its place
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _manifest(config, sources: list[Source], items, pieces, failures, duplicates, shards,
              encode_seconds: float, build_seconds: float) -> dict:  # fmt: skip
    import music_lm

    table: dict[str, dict[str, dict[str, int]]] = defaultdict(
        lambda: {s: {"pieces": 0, "notes": 0, "tokens": 0} for s in SPLITS}
    )
    for piece in pieces:
        row = table[piece.source][piece.split]
        row["pieces"] += 1
        row["notes"] += piece.notes
        row["tokens"] += piece.tokens
    listed = Counter(item.source for item in items)
    failed = Counter(label.split(":", 1)[0] for label, _ in failures)
    duplicated = Counter(label.split(":", 1)[0] for label, _ in duplicates)
    styles = Counter(piece.style for piece in pieces)
    totals = {s: {k: sum(table[src][s][k] for src in table) for k in ("pieces", "notes", "tokens")}
              for s in SPLITS}  # fmt: skip
    return {
        "format": CORPUS_FORMAT,
        "version": CORPUS_VERSION,
        "music_lm": music_lm.__version__,
        "encoder": ENCODER_VERSION,
        "dtype": "uint16",
        "vocab_size": len(VOCAB),
        "vocab_sha256": VOCAB.sha256,
        "config": asdict(config),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(build_seconds, 2),
        "encode_seconds": round(encode_seconds, 2),
        "sources": [
            {
                "source": s.tag,
                "spec": s.spec(),
                "listed": listed[s.tag],
                "failed": failed[s.tag],
                "duplicates": duplicated[s.tag],
                **{split: table[s.tag][split] for split in SPLITS},
            }
            for s in sources
        ],
        "splits": totals,
        "styles": dict(sorted(styles.items(), key=lambda kv: -kv[1])),
        "shards": shards,
    }


def iter_failures(out: Path) -> Iterator[tuple[str, str]]:
    """The (piece, reason) rows of a built corpus's failure list."""
    with open(out / FAILURES, encoding="utf-8") as f:
        next(f)
        for line in f:
            name, _, reason = line.rstrip("\n").partition("\t")
            yield name, reason
