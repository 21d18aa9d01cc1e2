"""Where corpus pieces come from: music21's bundled corpus, folders of MIDI files, and the
MIDI files of a few Debian packages.

A source is written `music21`, `DIR[:TAG]` or `debian:PACKAGE[:TAG]`. It lists its
pieces as `Item`s; a worker turns an item into MIDI bytes (`item_midi`), which the codec
then encodes. music21 pieces go through music21's own MIDI writer (ties joined, repeats
expanded, dynamics as velocities, parts as instruments), with their notated bar lines
kept (a pickup is a short first bar), so every piece, whatever its format, enters the
corpus through the same tested MIDI reader.
"""

from __future__ import annotations

import copy
import hashlib
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from music_lm.corpus.debian import check_allowed, default_cache_dir, package_midi_files
from music_lm.corpus.errors import CorpusError, SourceError
from music_lm.files import MIDI_SUFFIXES
from music_lm.tokens.vocab import STYLES

MUSIC21 = "music21"
DEBIAN = "debian"

# music21 corpus collection (its folder) -> style tag. Collections not listed here
# (demos, theory exercises) are test material, not music, and are left out.
MUSIC21_STYLES: dict[str, str] = {
    "airdsAirs": "scottish",
    "bach": "bach",
    "beach": "romantic",
    "beethoven": "beethoven",
    "chopin": "chopin",
    "ciconia": "medieval",
    "corelli": "baroque",
    "cpebach": "classical",
    "essenFolksong": "folk-essen",
    "handel": "handel",
    "haydn": "haydn",
    "johnson_j_r": "american",
    "joplin": "joplin",
    "josquin": "josquin",
    "leadSheet": "american",
    "liliuokalani": "world",
    "luca": "medieval",
    "lusitano": "renaissance",
    "miscFolk": "folk",
    "monteverdi": "monteverdi",
    "mozart": "mozart",
    "nottingham-dataset": "folk",
    "oneills1850": "irish",
    "palestrina": "palestrina",
    "ryansMammoth": "american",
    "schoenberg": "modern",
    "schubert": "schubert",
    "schumann_clara": "schumann",
    "schumann_robert": "schumann",
    "trecento": "medieval",
    "verdi": "romantic",
    "weber": "romantic",
    "webern": "modern",
}
# Formats music21 parses as music; .rntxt files are roman-numeral analyses.
MUSIC21_SUFFIXES = (".abc", ".krn", ".mxl", ".xml", ".musicxml")

# Bump when music21_midi's output for a piece changes: cached encodings are then redone.
MUSIC21_RECIPE = "midi-3"

_ABC_TUNE = re.compile(rb"^X:\s*(\d+)", re.MULTILINE)
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Source:
    """One corpus source: music21's corpus, a folder of MIDI files with a tag, or a Debian
    package's MIDI files with a tag."""

    kind: str  # "music21", "midi" or "debian"
    path: str  # the folder; for music21, the collections to take ("" for all); the package
    tag: str  # source label: "music21", the folder's tag, the package's tag

    def spec(self) -> str:
        if self.kind == MUSIC21:
            return f"{MUSIC21}:{self.path}" if self.path else MUSIC21
        if self.kind == DEBIAN:
            suffix = "" if self.tag == self.path else f":{self.tag}"
            return f"{DEBIAN}:{self.path}{suffix}"
        return f"{self.path}:{self.tag}"


@dataclass(frozen=True)
class Item:
    """One piece to encode: a MIDI file, or one piece (one tune of an ABC file) of music21.

    A Debian package's file is a "midi" item that also names where it comes from."""

    source: str  # the source's label
    kind: str  # "music21" or "midi"
    path: str  # the file to read
    name: str  # how reports name it: relative to the source folder (or to the package's
    # root: `usr/share/games/...`), "#N" for a tune
    style: str  # style tag written as the piece's `style:` token
    number: int | None = None  # tune number inside an ABC file
    package: str = ""  # a Debian package's pieces: the package, its version, the licence
    version: str = ""  # that its copyright file gives the file
    licence: str = ""

    def origin(self) -> dict[str, str] | None:
        """Where a Debian package's piece comes from (package, version, file, licence);
        None for other pieces."""
        if not self.package:
            return None
        return {"package": self.package, "version": self.version, "file": self.name,
                "licence": self.licence}  # fmt: skip


def parse_source(spec: str) -> Source:
    """`music21`, `music21:bach,palestrina` (some of its collections, by folder or style
    name), `DIR` (tagged with the folder's name), `DIR:TAG`, `debian:PACKAGE` (tagged with
    the package's name) or `debian:PACKAGE:TAG` -> Source. Nothing is fetched here."""
    if spec.startswith(f"{DEBIAN}:") and not Path(spec).is_dir():
        return _debian_source(spec)
    if spec == MUSIC21 or (spec.startswith(f"{MUSIC21}:") and not Path(spec).is_dir()):
        wanted = [c for c in spec[len(MUSIC21) + 1 :].split(",") if c]
        known = set(MUSIC21_STYLES) | set(MUSIC21_STYLES.values())
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise SourceError(
                f"source {spec!r}: {', '.join(unknown)} is not a music21 collection or style "
                f"(collections: {', '.join(sorted(MUSIC21_STYLES))})"
            )
        return Source(MUSIC21, ",".join(wanted), MUSIC21)
    path, tag = spec, None
    if ":" in spec and not Path(spec).is_dir():
        path, tag = spec.rsplit(":", 1)
    folder = Path(path)
    if not folder.is_dir():
        raise SourceError(f"source {spec!r}: {path} is not a folder (nor 'music21')")
    tag = tag or folder.resolve().name
    _check_tag(spec, tag)
    return Source("midi", str(folder), tag)


def _debian_source(spec: str) -> Source:

    package, _, tag = spec[len(DEBIAN) + 1 :].partition(":")
    check_allowed(package)
    tag = tag or package
    _check_tag(spec, tag)
    return Source(DEBIAN, package, tag)


def _check_tag(spec: str, tag: str) -> None:
    if not _TAG.match(tag) or tag == MUSIC21:
        raise SourceError(
            f"source {spec!r}: tag {tag!r} must be letters, digits, '-', '_' or '.' "
            f"(and not {MUSIC21!r})"
        )


def style_of_tag(tag: str, otherwise: str = "user") -> str:
    """The style token of a folder's or package's tag: the tag itself when it is a style
    of the vocabulary (`jazz`, `irish`, ...), else `otherwise`."""
    tag = tag.lower()
    return tag if tag in STYLES else otherwise


def list_items(source: Source, debian_dir: str | Path | None = None) -> list[Item]:
    """The pieces of a source, in a fixed order (sorted paths, tunes in file order). A
    Debian package is fetched and unpacked first, into `debian_dir` (see
    `music_lm.corpus.debian.default_cache_dir`)."""
    if source.kind == MUSIC21:
        wanted = set(source.path.split(",")) if source.path else None
        return music21_items(wanted)
    if source.kind == DEBIAN:
        files = package_midi_files(source.path, debian_dir or default_cache_dir())
        # `none`, not `user`: a MIDI file a user brings is read with style:none, and the
        # packages' band music is what such files sound like
        style = style_of_tag(source.tag, otherwise="none")
        return [
            Item(
                source.tag,
                "midi",
                str(f.path),
                f.relative_path,
                style,
                package=f.package,
                version=f.version,
                licence=f.licence,
            )
            for f in files
        ]
    folder = Path(source.path)
    style = style_of_tag(source.tag)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
    return [
        Item(source.tag, "midi", str(p), p.relative_to(folder).as_posix(), style)
        for p in paths
        if p.is_file()
    ]


def music21_items(wanted: set[str] | None = None) -> list[Item]:
    """The pieces of music21's bundled corpus that we use (of the `wanted` collections or
    styles, else all); ABC files holding many tunes (an "opus") give one item per tune."""
    # music21 takes seconds to import: only when a music21 piece is read
    from music21 import common, corpus

    root = Path(common.getCorpusFilePath())
    items: list[Item] = []
    # music21's own corpus only ("core"), not corpora a user registered with it
    for path in sorted(Path(p) for p in corpus.getPaths(name=("core",))):
        relative = path.relative_to(root)
        collection = relative.parts[0]
        style = MUSIC21_STYLES.get(collection)
        if style is None or path.suffix not in MUSIC21_SUFFIXES:
            continue
        if wanted is not None and not {collection, style} & wanted:
            continue
        numbers: list[int | None] = [None]
        if path.suffix == ".abc":
            found = list(dict.fromkeys(int(n) for n in _ABC_TUNE.findall(path.read_bytes())))
            numbers = found if len(found) > 1 else [None]
        name = relative.as_posix()
        items += [
            Item(MUSIC21, MUSIC21, str(path), name + ("" if n is None else f"#{n}"), style, n)
            for n in numbers
        ]
    return items


def content_key(item: Item, data: bytes) -> str:
    """Cache key of an item: its file's content, the tune number, and for music21 pieces
    music21's version (its parser decides the notes)."""
    digest = hashlib.sha256(data).hexdigest()
    if item.kind != MUSIC21:
        return digest
    # music21 takes seconds to import: only when a music21 piece is read
    import music21

    number = -1 if item.number is None else item.number
    return f"{digest}#{number}@music21-{music21.__version__}/{MUSIC21_RECIPE}"


def item_midi(item: Item) -> bytes:
    """The piece as Standard MIDI File bytes (a MIDI file as it is on disk)."""
    if item.kind != MUSIC21:
        return Path(item.path).read_bytes()
    return music21_midi(item.path, item.number)


def music21_midi(path: str, number: int | None = None) -> bytes:
    """Parse one music21 corpus piece and write it as MIDI (see `music21_score_midi`)."""
    # music21 takes seconds to import: only when a music21 piece is read
    from music21 import converter, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21 warns about every odd spelling
        parsed = converter.parse(path, number=number, forceSource=True, storePickle=False)
    if isinstance(parsed, stream.Opus):
        parsed = parsed.scores[0]
    return music21_score_midi(parsed)


def music21_score_midi(score) -> bytes:
    """A music21 score as MIDI bytes: music21's MIDI writer, repeats expanded, with the
    notated bar lines kept.

    music21's writer plays a pickup (anacrusis) from tick 0 and writes one time signature
    there, so every later bar line of its file would fall early by the pickup's missing
    length; so would every bar line after any other short measure (the split bars around
    an ABC tune's repeats, once expanded). A time signature event starts a bar where it
    stands (as in DAWs and pretty_midi), so one restating the meter is added at each
    measure that the file's bar lines miss (`restate_meters`).

    Two music21 bugs are worked around: its ABC reader and its repeat expansion put one
    meter, key or tempo mark object in several measures, and the MIDI writer then refuses
    the second (a thousand Essen and O'Neill tunes); and some pieces' repeat marks are
    inconsistent and cannot be expanded (a few quartets): the marks are then removed and
    the music is taken once, as written. `score` may be changed (such repeat marks
    removed)."""
    midi, played = _write_midi(score)
    restate_meters(midi, [] if played is None else _measure_starts(played))
    return midi.writestr()


def _write_midi(score):
    """(music21's MidiFile of the score, the score with repeats expanded that it plays, or
    None for a score without measures)."""
    # music21 takes seconds to import: only when a music21 piece is read
    from music21 import repeat, stream
    from music21.midi import translate

    # The writer expands the repeats itself (`score.expandRepeats()`, a deep copy) and
    # writes that copy, whose measures we need: the call is wrapped, for this score alone,
    # rather than the score expanded twice.
    played = []
    expand = score.expandRepeats

    def expand_and_keep(*args, **kwargs):
        try:
            expanded = expand(*args, **kwargs)
        except repeat.ExpanderException:
            _without_repeats(score)
            expanded = expand(*args, **kwargs)
        _unshare_marks(expanded)
        played.append(expanded)
        return expanded

    score.expandRepeats = expand_and_keep
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # music21 warns about every odd spelling
            midi = translate.streamToMidiFile(score)
    finally:
        del score.expandRepeats  # the method again
    if not played and score[stream.Measure]:
        raise CorpusError(
            f"music21's MIDI writer wrote {score!r} without calling its expandRepeats(): "
            "where its measures fall in the MIDI file is unknown"
        )
    return midi, played[0] if played else None


def _parts(score) -> list:
    """A score's parts (none for a single part or a plain stream)."""
    # music21 takes seconds to import: only when a music21 piece is read
    from music21 import stream

    return list(score.parts) if isinstance(score, stream.Score) else []


def _measure_starts(score) -> list[Fraction]:
    """Where the measures of the score start, in quarter notes from its beginning: those of
    the part with the most measures, the first of them on a tie (the parts of a score share
    their bar lines, but for a few pieces whose parts fall out of step in the corpus)."""
    # music21 takes seconds to import: only when a music21 piece is read
    from music21 import stream

    best: list[Fraction] = []
    for part in (*_parts(score), score):
        measures = part.getElementsByClass(stream.Measure)
        if len(measures) > len(best):
            part_start = Fraction(score.elementOffset(part)) if part is not score else 0
            best = [part_start + Fraction(part.elementOffset(m)) for m in measures]
    return best


def restate_meters(midi, bar_quarters: Iterable[Fraction]) -> None:
    """Add to `midi` (a music21 `MidiFile`) a time signature event, restating the meter in
    force, at each bar start in `bar_quarters` (quarter notes from the start) where its time
    signatures put no bar line: at the first full bar after a pickup, and at the bar after
    any short bar.

    Bar lines follow `Score.bar_starts`: a time signature starts a bar where it stands, bars
    of its length follow, 4/4 before any. The events go into the first track, music21's
    conductor track, which holds its time signatures."""
    # music21 takes seconds to import: only when a music21 piece is read
    from music21.midi import DeltaTime, MetaEvents
    from music21.midi.translate import getTimeForEvents

    conductor = midi.tracks[0]
    events = getTimeForEvents(conductor)
    meters = [(tick, e) for tick, e in events if e.type == MetaEvents.TIME_SIGNATURE]
    ppq = midi.ticksPerQuarterNote
    bar_ticks = sorted({round(quarters * ppq) for quarters in bar_quarters})
    added = _missing_meters(meters, bar_ticks, ppq)
    if not added:
        return
    # Stable sort: events at one tick keep their order, the end of track stays last.
    ends = [(tick, e) for tick, e in events if e.type == MetaEvents.END_OF_TRACK]
    others = [(tick, e) for tick, e in events if e.type != MetaEvents.END_OF_TRACK]
    merged = sorted([*others, *added], key=lambda pair: pair[0])
    if ends:
        merged.append((max(ends[-1][0], merged[-1][0]), ends[-1][1]))
    conductor.events, now = [], 0
    for tick, event in merged:
        conductor.events += [DeltaTime(conductor, time=tick - now), event]
        now = tick
    conductor.updateEvents()


def _missing_meters(meters: list, bar_ticks: list[int], ppq: int) -> list:
    """(tick, time signature event) for each tick of `bar_ticks` that the time signatures
    `meters` ((tick, event) in order) put no bar line on: a copy of the one in force."""
    # music21 takes seconds to import: only when a music21 piece is read
    from music21.midi import MetaEvents, MidiEvent

    added = []
    in_force = None  # 4/4 until the first time signature
    bar_start, index = 0, 0
    for tick in bar_ticks:
        while index < len(meters) and meters[index][0] <= tick:
            bar_start, in_force = meters[index]
            index += 1
        numerator, log2_denominator = (4, 2) if in_force is None else in_force.data[:2]
        bar_length = max(numerator * 4 * ppq >> log2_denominator, 1)
        if (tick - bar_start) % bar_length:
            restated = MidiEvent(type=MetaEvents.TIME_SIGNATURE)
            restated.data = in_force.data if in_force is not None else bytes([4, 2, 24, 8])
            added.append((tick, restated))
            bar_start = tick
    return added


def _without_repeats(score):
    # music21 takes seconds to import: only when a music21 piece is read
    from music21 import bar, repeat, stream

    for measure in score.recurse().getElementsByClass(stream.Measure):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(measure, side), bar.Repeat):
                setattr(measure, side, None)
    for mark in list(score.recurse().getElementsByClass(repeat.RepeatMark)):
        mark.activeSite.remove(mark)
    return score


def _unshare_marks(score) -> None:
    """Give each meter, key and tempo mark that appears in several measures its own copy."""

    # music21 takes seconds to import: only when a music21 piece is read
    from music21 import key, meter, tempo

    marks = (meter.TimeSignature, key.KeySignature, tempo.MetronomeMark)
    seen: set[int] = set()
    for container in score.recurse(streamsOnly=True, includeSelf=True):
        for mark in list(container.getElementsByClass(marks)):
            if id(mark) in seen:
                container.replace(mark, copy.deepcopy(mark))
            seen.add(id(mark))
