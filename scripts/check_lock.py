"""Compare the running environment with requirements.lock, the project's exact pins.

    python scripts/check_lock.py            # exit 1 naming every difference
    python scripts/check_lock.py --prune    # first uninstall what the lock does not name

A difference is a distribution the lock pins that is missing or at another version, or one
installed that the lock does not name (the project itself excepted). A local version label
counts: the lock's ``torch==2.13.0+cpu`` is not met by PyPI's ``torch==2.13.0``.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

LOCK_PATH = Path(__file__).resolve().parent.parent / "requirements.lock"
PROJECT = "music-lm"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def canonical_name(name: str) -> str:
    """PEP 503 normalised name: ``Typing_Extensions`` -> ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK_PATH) -> dict[str, str]:
    """The lock's pins as {canonical name: version}; any line that is not a pin is refused."""
    pins: dict[str, str] = {}
    for line_number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{path.name}:{line_number}: not an exact pin: {line!r}")
        pins[canonical_name(match.group(1))] = match.group(3)
    return pins


def installed() -> dict[str, str]:
    """The distributions this interpreter sees, as {canonical name: version}."""
    return {
        canonical_name(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }


def differences(lock: dict[str, str], venv: dict[str, str]) -> list[str]:
    """One line per difference, sorted by name; empty when the venv is the lock."""
    lines = []
    for name in sorted(set(lock) | set(venv)):
        if name == PROJECT:
            continue
        want, have = lock.get(name), venv.get(name)
        if want is None:
            lines.append(f"{name} {have} is installed but not in the lock")
        elif have is None:
            lines.append(f"{name}=={want} is in the lock but not installed")
        elif have != want:
            lines.append(f"{name} is {have}, the lock says {want}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prune", action="store_true", help="uninstall what the lock lacks")
    parser.add_argument("--lock", type=Path, default=LOCK_PATH)
    args = parser.parse_args(argv)
    lock = read_lock(args.lock)
    if args.prune:
        extra = sorted(set(installed()) - set(lock) - {PROJECT})
        if extra:
            print(f"removing what {args.lock.name} does not name: {' '.join(extra)}")
            uninstall = [sys.executable, "-m", "pip", "uninstall", "-q", "-y", *extra]
            subprocess.run(uninstall, check=True)
    found = differences(lock, installed())
    for line in found:
        print(f"{args.lock.name}: {line}", file=sys.stderr)
    if found:
        print(f"{len(found)} difference(s); run 'make setup' to install the lock", file=sys.stderr)
        return 1
    print(f"{args.lock.name}: all {len(lock)} pins installed, nothing else")
    return 0


if __name__ == "__main__":
    sys.exit(main())
