"""`music-lm corpus build | stats`: training corpora of token shards."""

from __future__ import annotations

from pathlib import Path

import typer

from music_lm.cli.root import (
    FORCE,
    SUSTAIN,
    app,
)
from music_lm.corpus.sources import CorpusError
from music_lm.files import (
    OutputExistsError,
)

corpus_app = typer.Typer(
    no_args_is_help=True, help="Build training corpora of token shards, and describe them."
)
app.add_typer(corpus_app, name="corpus")
DEFAULT_CORPUS = Path("data/corpus")


@corpus_app.command("build")
def corpus_build(
    sources: list[str] = typer.Option(
        ...,
        "--source",
        "-s",
        help="music21 (its bundled corpus; music21:bach,palestrina for some collections), "
        "a folder of MIDI files as DIR or DIR:TAG (tag: the folder's name by default), or "
        "a Debian package's MIDI files as debian:PACKAGE or debian:PACKAGE:TAG (one of the "
        "nine allowed packages; tag: the package's name). Repeat for several sources.",
    ),
    output: Path = typer.Option(DEFAULT_CORPUS, "--output", "-o", help="Corpus folder."),
    valid: float = typer.Option(0.05, help="Share of pieces held out for validation."),
    test: float = typer.Option(0.05, help="Share of pieces held out for testing."),
    seed: int = typer.Option(0, help="Seed of the split (a hash of each piece's content)."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Worker processes (0: all cores)."),
    max_pieces: int = typer.Option(
        0, help="At most this many pieces per source, spread over it (0: all)."
    ),
    dedup: bool = typer.Option(True, help="Drop duplicate pieces, transposed copies too."),
    shard_tokens: int = typer.Option(8 * 1024 * 1024, help="Tokens per shard file at most."),
    cache: Path | None = typer.Option(
        None, help="Encoding cache folder (default: $MUSIC_LM_CACHE or ~/.cache/music_lm)."
    ),
    debian_cache: Path | None = typer.Option(
        None,
        help="Where Debian packages are downloaded and unpacked (default: "
        "$MUSIC_LM_DEBIAN_CACHE or data/debian).",
    ),
    engine: str = typer.Option(
        "local", help="local (a process pool) or datasets (Hugging Face datasets' map)."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: when on a terminal)."
    ),
    sustain: bool = SUSTAIN,
) -> None:
    """Encode sources into uint16 token shards with an index, a manifest and the tokenizer.

    Run it again to update: only files whose content changed are encoded again."""
    # the command's stage loads when it runs, so --help and the codec commands stay fast
    from music_lm.corpus.build import build_corpus
    from music_lm.corpus.config import BuildConfig
    from music_lm.corpus.stats import manifest_table

    config = BuildConfig(
        tuple(sources), valid, test, seed, sustain, dedup, shard_tokens, max_pieces or None
    )
    log = lambda message: typer.echo(message, err=True)  # noqa: E731
    if engine == "local":
        result = build_corpus(config, output, cache, jobs or None, progress, log, debian_cache)
    elif engine == "datasets":
        # the command's stage loads when it runs, so --help and the codec commands stay fast
        from music_lm.corpus.hf_dataset import build_corpus_datasets

        result = build_corpus_datasets(config, output, jobs or None, log, cache, debian_cache)
    else:
        raise CorpusError(f"--engine {engine!r}: choose local or datasets")
    typer.echo(manifest_table(result.manifest))
    for name, reason in result.failures[:10]:
        typer.echo(f"failed: {name}: {reason}", err=True)
    if result.failures:
        more = f" ({len(result.failures) - 10} more)" if len(result.failures) > 10 else ""
        typer.echo(
            f"{len(result.failures)} piece(s) failed{more}: listed in "
            f"{result.out / 'failures.tsv'}",
            err=True,
        )
    typer.echo(f"wrote {result.out} ({result.encoded} encoded, {result.cached} from the cache)")


@corpus_app.command("stats")
def corpus_stats(
    folder: Path = typer.Argument(DEFAULT_CORPUS, help="A built corpus folder."),
    png: Path | None = typer.Option(
        None, "--png", help="Where to write the distributions (default: FOLDER/stats.png)."
    ),
    sample: int = typer.Option(2000, help="Pieces decoded for the duration histogram."),
    force: bool = FORCE,
) -> None:
    """The manifest as a table, and a PNG of pitch, duration, length and style distributions."""
    # the command's stage loads when it runs, so --help and the codec commands stay fast
    from music_lm.corpus.dataset import Corpus
    from music_lm.corpus.stats import manifest_table, plot_stats

    corpus = Corpus(folder)
    typer.echo(manifest_table(corpus.manifest))
    target = png or folder / "stats.png"
    if target.exists() and not force and png is not None:
        raise OutputExistsError(f"{target}: exists (use --force to overwrite)")
    plot_stats(corpus, target, sample)
    typer.echo(f"wrote {target}")
