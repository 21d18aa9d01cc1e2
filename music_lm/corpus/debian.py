"""Free music shipped in Debian packages: fetch a package, unpack it, list its MIDI files
with their licence. Nothing is installed: `apt-get download` fetches the .deb into a cache
folder and `dpkg -x` unpacks it there.

    files = package_midi_files("simutrans-data")          # data/debian/ by default
    files[0].relative_path, files[0].licence              # 'usr/share/games/...', 'Artistic-1.0'

Only the packages of ALLOWED_PACKAGES may be fetched: the MIDI files of every other
package are kept as a test this project never sees. This is the source that
`music-lm corpus build --source debian:PACKAGE` builds on.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from music_lm.corpus.errors import SourceError

# Packages whose music we may train on and test with: checked by hand to hold music (not
# game charts, as fretsonfire's song MIDIs are). songwrite's .mid files are not readable
# MIDI, and several of freedink's have no drums; they stay listed: a build reports them.
ALLOWED_PACKAGES: tuple[str, ...] = (
    "simutrans-data",
    "planetblupi-music-midi",
    "freedink-data",
    "kobodeluxe-data",
    "songwrite",
    "liquidwar-data",
    "pangzero",
    "crimson",
    "pinball-table-hurd-data",
)
DEFAULT_CACHE_DIR = Path("data") / "debian"
CACHE_ENV = "MUSIC_LM_DEBIAN_CACHE"  # moves DEFAULT_CACHE_DIR
DEBIAN_MIDI_SUFFIXES = (".mid", ".midi", ".kar")
APT_TIMEOUT_S = 300.0
_UNPACKED_MARK = ".unpacked"  # written last: a folder without it is an interrupted unpack
_DEP5_FORMAT = re.compile(r"^Format:\s*\S*copyright-format", re.IGNORECASE)


class DebianError(SourceError):
    """A Debian package that cannot be used: names the package and the problem."""


@dataclass(frozen=True)
class DebianPackage:
    """A fetched and unpacked package."""

    package: str
    version: str
    deb_path: Path  # the .deb in the cache folder
    root: Path  # where its files are unpacked
    licence: str  # the copyright file's licences (short names), for the whole package


@dataclass(frozen=True)
class DebianMidi:
    """One MIDI file of a package, with where it comes from and under what licence."""

    package: str
    version: str
    path: Path  # the unpacked file
    relative_path: str  # inside the package: `usr/share/games/simutrans/music/x.mid`
    licence: str


def check_allowed(package: str) -> None:
    """DebianError unless `package` is one of ALLOWED_PACKAGES."""
    if package not in ALLOWED_PACKAGES:
        raise DebianError(
            f"debian:{package}: not an allowed package (allowed: {', '.join(ALLOWED_PACKAGES)})"
        )


def default_cache_dir() -> Path:
    """$MUSIC_LM_DEBIAN_CACHE, else data/debian (under the working folder; git-ignored)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR)


def fetch_package(package: str, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> DebianPackage:
    """The package's .deb in `cache_dir` (downloaded unless already there) and its files
    unpacked beside it (unless already unpacked)."""
    check_allowed(package)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    deb = _cached_deb(package, cache) or download_deb(package, cache)
    root = cache / deb.stem
    if not (root / _UNPACKED_MARK).is_file():
        _unpack(package, deb, root)
    return DebianPackage(
        package=package,
        version=_version_of(deb),
        deb_path=deb,
        root=root,
        licence=licence_of(_copyright_text(root, package)),
    )


def package_midi_files(package: str, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> list[DebianMidi]:
    """The package's MIDI files (.mid, .midi, .kar in any case), sorted by path."""
    fetched = fetch_package(package, cache_dir)
    copyright_text = _copyright_text(fetched.root, package)
    replaced = replacement_licences(_replacements_text(fetched.root, package))
    paths = sorted(
        p
        for p in fetched.root.rglob("*")
        if p.suffix.lower() in DEBIAN_MIDI_SUFFIXES and p.is_file() and not p.is_symlink()
    )
    files = []
    for path in paths:
        relative = path.relative_to(fetched.root).as_posix()
        files.append(
            DebianMidi(
                package=package,
                version=fetched.version,
                path=path,
                relative_path=relative,
                licence=replaced.get(path.name) or licence_of(copyright_text, relative),
            )
        )
    return files


def download_deb(package: str, cache: Path) -> Path:
    """Run `apt-get download PACKAGE` in `cache`; the .deb it wrote."""
    if shutil.which("apt-get") is None:
        raise DebianError(f"debian:{package}: apt-get is not installed (needed to fetch packages)")
    try:
        done = subprocess.run(
            ["apt-get", "download", package],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise DebianError(
            f"debian:{package}: apt-get download took over {APT_TIMEOUT_S:.0f} s (no network?)"
        ) from None
    deb = _cached_deb(package, cache)
    if done.returncode != 0 or deb is None:
        raise DebianError(f"debian:{package}: apt-get download failed: {_apt_problem(done)}")
    return deb


def _apt_problem(done: subprocess.CompletedProcess) -> str:
    """apt's own error line, shortened, with a hint for the common ones."""
    lines = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")] or lines
    problem = errors[-1].removeprefix("E:").strip() if errors else f"exit status {done.returncode}"
    if "Unable to locate package" in problem:
        return f"{problem} (not in apt's package lists: run apt-get update?)"
    if "Failed to fetch" in problem or "resolve" in problem.lower():
        return f"{problem} (no network?)"
    return problem


def _cached_deb(package: str, cache: Path) -> Path | None:
    """The newest .deb of `package` in `cache`, or None. apt names it PACKAGE_VERSION_ARCH."""
    debs = [p for p in cache.glob(f"{package}_*.deb") if p.is_file()]
    return max(debs, key=lambda p: p.stat().st_mtime_ns) if debs else None


def _version_of(deb: Path) -> str:
    """The version in the .deb's file name (apt writes `:` of an epoch as `%3a`)."""
    parts = deb.stem.split("_")
    return parts[1].replace("%3a", ":") if len(parts) >= 3 else "unknown"


def _unpack(package: str, deb: Path, root: Path) -> None:
    """`dpkg -x` into a fresh folder beside `root`, then renamed: never a half-unpacked root."""
    if shutil.which("dpkg") is None:
        raise DebianError(f"debian:{package}: dpkg is not installed (needed to unpack {deb.name})")
    if root.exists():
        shutil.rmtree(root)
    scratch = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        command = ["dpkg", "-x", str(deb), str(scratch)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            problem = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise DebianError(f"debian:{package}: cannot unpack {deb.name}: {problem}")
        (scratch / _UNPACKED_MARK).write_text(deb.name + "\n")
        scratch.rename(root)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)


def _copyright_text(root: Path, package: str) -> str:
    path = root / "usr" / "share" / "doc" / package / "copyright"
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _replacements_text(root: Path, package: str) -> str:
    """freedink-data's README-REPLACEMENTS.txt(.gz): the licences of the files that replaced
    the original game's, which its copyright file leaves to it."""
    doc = root / "usr" / "share" / "doc" / package
    for name, opener in (("README-REPLACEMENTS.txt", open), ("README-REPLACEMENTS.txt.gz",
                                                               gzip.open)):  # fmt: skip
        try:
            with opener(doc / name, "rt", encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            continue
    return ""


# ---- licences ----

# Licences that free-text copyright files give as text: their first line -> short name.
_KNOWN_TEXTS = {"This software is provided 'as-is'": "Zlib"}
_REPLACED_FILE = re.compile(r"^- (\S+)")
_REPLACED_LICENCE = re.compile(r"^\s*(\+?)License:\s*(.+?)\s*$", re.IGNORECASE)


def replacement_licences(text: str) -> dict[str, str]:
    """File name -> licence from a list of replaced files (freedink-data's): each entry
    starts `- NAME (what)` and gives its licence on a `License:` line; the line marked
    `+License:` (the version in the package) wins over alternates."""
    found: dict[str, tuple[bool, str]] = {}  # name -> (marked with +, licence)
    name = None
    for line in text.splitlines():
        entry = _REPLACED_FILE.match(line)
        if entry:
            name = entry.group(1)
            continue
        licence = _REPLACED_LICENCE.match(line)
        if licence and name is not None:
            marked = bool(licence.group(1))
            if name not in found or (marked and not found[name][0]):
                found[name] = (marked, licence.group(2))
    return {name: licence for name, (_, licence) in found.items()}


def licence_of(copyright_text: str, relative_path: str | None = None) -> str:
    """The licence a copyright file gives, as short names (`GPL-2+`, `GPL-2+, PD`).

    A machine-readable (DEP-5) file: for `relative_path`, the licence of the last stanza
    whose `Files:` patterns match the end of that path (they name paths of the source
    tree, which the package installs under another prefix); when none but `*` matches,
    `*`'s; without a path, every licence named. A free-text file: its best first line
    about the licence. "unknown" when there is none."""
    if not copyright_text.strip():
        return "unknown"
    if not _DEP5_FORMAT.match(copyright_text.lstrip()):
        return _free_text_licence(copyright_text)
    stanzas = _dep5_stanzas(copyright_text)
    if relative_path is not None:
        matched = [
            licence
            for patterns, licence in stanzas
            if licence and any(_files_match(pattern, relative_path) for pattern in patterns)
        ]
        if matched:
            return matched[-1]
    names = [licence for _, licence in stanzas if licence]
    return ", ".join(dict.fromkeys(names)) or "unknown"


def _dep5_stanzas(text: str) -> list[tuple[list[str], str]]:
    """(Files patterns, licence) of each stanza; a licence whose short name is empty is
    named by the first line of its text."""
    stanzas: list[tuple[list[str], str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        name = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and name is not None:
                fields[name].append(line.strip())
            elif ":" in line:
                name, value = line.split(":", 1)
                name = name.strip().lower()
                fields[name] = [value.strip()]
        if "license" not in fields:
            continue
        short, *body = fields["license"]
        if not short:
            short = next((line for line in body if line and line != "."), "")
        patterns = " ".join(fields.get("files", [])).replace(",", " ").split()
        stanzas.append((patterns, short))
    return stanzas


def _files_match(pattern: str, relative_path: str) -> bool:
    """A DEP-5 pattern against an installed path: `*` matches everything, any other
    pattern the path's last components (`music/x.mid` matches `usr/share/game/music/x.mid`)."""
    if pattern == "*":
        return True
    parts = relative_path.split("/")
    depth = pattern.count("/") + 1
    return len(parts) >= depth and fnmatch.fnmatchcase("/".join(parts[-depth:]), pattern)


def _free_text_licence(text: str) -> str:
    """The line that says what the licence is: the rest of a `License:` line, else the
    first line of text after a line starting `Licen[cs]e`/`Licensing`, else the first
    line that mentions a licence."""
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        heading = re.match(r"^licen[cs](e|ing)\b[^:]*:\s*(.*)$", line, re.IGNORECASE)
        if heading:
            if heading.group(2):
                return _short_name(heading.group(2))
            following = next((x for x in lines[index + 1 :] if x), "")
            if following:
                return _short_name(following)
    mention = next((line for line in lines if re.search(r"licen[cs]e", line, re.I)), "")
    return mention or "unknown"


def _short_name(line: str) -> str:
    """A well-known licence's short name for its first line of text, else the line."""
    return next((short for text, short in _KNOWN_TEXTS.items() if line.startswith(text)), line)
