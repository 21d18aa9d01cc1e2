"""Writing a corpus folder: the token ids of each split as uint16 shards, `index.jsonl`,
`manifest.json`, the failure and duplicate lists and the Hugging Face tokenizer.

The manifest's `origins` lists, for each kept piece of a Debian package, the package,
its version, the file inside it and its licence; each Debian source's entry sums its
licences. Corpora built before these keys load all the same (readers use `.get`).

The folder is written next to its final place and moved in when complete, so a failed or
interrupted build leaves the previous corpus as it was; a folder that holds anything a
build does not write is never replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

import music_lm
from music_lm.corpus.config import BuildConfig
from music_lm.corpus.dataset import CORPUS_FORMAT, SPLITS, Piece
from music_lm.corpus.encoding import ENCODER_VERSION
from music_lm.corpus.sources import DEBIAN, CorpusError, Item, Source
from music_lm.tokens.vocab import VOCAB

CORPUS_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.jsonl"
FAILURES = "failures.tsv"
DUPLICATES = "duplicates.tsv"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# What a build writes: an existing corpus folder holding anything else is not replaced.
CORPUS_FILES = re.compile(
    r"(train|valid|test)-\d{3}\.bin|index\.jsonl|manifest\.json|failures\.tsv|"
    r"duplicates\.tsv|tokenizer(_config)?\.json|special_tokens_map\.json|stats\.png|parquet"
)


def _read_manifest(folder: Path) -> dict | None:
    """The manifest of the corpus in `folder`, or None when there is none to read."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def check_output(out: Path) -> None:
    """`out` may be new, empty, or a corpus an earlier build wrote (it is then rebuilt):
    a build never removes what it did not write."""
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    manifest = _read_manifest(out)
    if manifest is None or manifest.get("format") != CORPUS_FORMAT:
        raise CorpusError(f"{out}: folder is not empty and holds no corpus; choose another -o")
    foreign = sorted(p.name for p in out.iterdir() if not CORPUS_FILES.fullmatch(p.name))
    if foreign:
        raise CorpusError(
            f"{out}: holds files a build does not write ({', '.join(foreign[:3])}): move "
            f"them away or choose another -o"
        )


def write_corpus(
    out: Path,
    config: BuildConfig,
    sources: list[Source],
    items: list[Item],
    pieces: list[Piece],
    fetch: Callable[[int], np.ndarray],
    failures: list[tuple[str, str]],
    duplicates: list[tuple[str, str]],
    encode_seconds: float,
    started: float,
    extra: Callable[[Path], None] | None = None,
    engine: str = "local",
    workers: int = 1,
    counts: dict[str, int] | None = None,
) -> dict:
    """Write the corpus folder `out` (pieces' ids from `fetch(index)`; `extra(folder)`
    adds an engine's own files) and return its manifest."""
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
        tokenizer = _write_tokenizer(staging, out)
        if extra is not None:
            extra(staging)
        manifest = _manifest(config, sources, items, pieces, failures, duplicates, shards,
                             encode_seconds, time.perf_counter() - started)  # fmt: skip
        manifest["engine"] = {"name": engine, "workers": workers, **(counts or {})}
        manifest["tokenizer_key"] = tokenizer
        manifest = json.loads(json.dumps(manifest))  # as it reads back: lists, not tuples
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def tokenizer_key() -> str:
    """What the tokenizer files follow from: the vocabulary, the module that writes them and
    the versions of transformers and tokenizers (read from their metadata: not imported)."""
    from importlib import metadata

    writer = Path(music_lm.__file__).parent / "tokens" / "tokenizer.py"
    parts = [VOCAB.sha256, hashlib.sha256(writer.read_bytes()).hexdigest()]
    for package in ("transformers", "tokenizers"):
        try:
            parts.append(f"{package}-{metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package}-none")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _write_tokenizer(staging: Path, previous: Path) -> str:
    """Write the tokenizer files into `staging`; its key (`tokenizer_key`). When the corpus
    being replaced has them under the same key they are copied: writing them imports
    transformers and torch, 2 s of a 2.7 s rebuild of 80 files."""
    key = tokenizer_key()
    manifest = _read_manifest(previous)
    files = [previous / name for name in TOKENIZER_FILES]
    if manifest is not None and manifest.get("tokenizer_key") == key:
        present = [f for f in files if f.is_file()]
        if any(f.name == "tokenizer.json" for f in present):
            for f in present:
                shutil.copyfile(f, staging / f.name)
            return key
    # the tokenizer's writer imports transformers: only when a corpus is written
    from music_lm.tokens.tokenizer import save_tokenizer

    save_tokenizer(staging)
    return key


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
    origins = _origins(items, pieces)
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
                **_package_summary(s, items, origins),
            }
            for s in sources
        ],
        "splits": totals,
        "styles": dict(sorted(styles.items(), key=lambda kv: -kv[1])),
        "shards": shards,
        "origins": origins,
    }


def _origins(items: list[Item], pieces: list[Piece]) -> list[dict]:
    """Where each kept piece of a Debian package comes from: source, piece name, split,
    package, version, file inside the package and its licence (copyright file)."""
    by_name = {(item.source, item.name): item for item in items if item.package}
    origins = []
    for piece in pieces:
        item = by_name.get((piece.source, piece.name))
        if item is not None:
            origins.append({"source": piece.source, "piece": piece.name,
                            "split": piece.split, **item.origin()})  # fmt: skip
    return origins


def _package_summary(source: Source, items: list[Item], origins: list[dict]) -> dict:
    """For a Debian source: its package, version and the licences of its kept pieces
    (licence -> pieces), for a model card's list of sources."""
    if source.kind != DEBIAN:
        return {}
    versions = sorted({item.version for item in items if item.source == source.tag})
    licences = Counter(o["licence"] for o in origins if o["source"] == source.tag)
    return {"package": source.path, "version": ", ".join(versions),
            "licences": dict(sorted(licences.items(), key=lambda kv: -kv[1]))}  # fmt: skip


def iter_failures(out: Path) -> Iterator[tuple[str, str]]:
    """The (piece, reason) rows of a built corpus's failure list."""
    with open(out / FAILURES, encoding="utf-8") as f:
        next(f)
        for line in f:
            name, _, reason = line.rstrip("\n").partition("\t")
            yield name, reason
