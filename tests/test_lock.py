"""The environment the suite runs in is requirements.lock, exactly (scripts/check_lock.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from check_lock import differences, installed, read_lock  # noqa: E402


def test_the_venv_is_the_lock() -> None:
    lock, venv = read_lock(), installed()
    found = differences(lock, venv)
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        # Another environment (conda's, say) may hold more than the lock; its pins must hold.
        found = [line for line in found if "not in the lock" not in line]
    assert not found, "\n".join(found)


def test_the_lock_pins_the_versions_the_code_needs() -> None:
    lock = read_lock()
    assert lock["torch"] == "2.13.0+cpu"  # the CPU build, never PyPI's CUDA one
    assert not [name for name in lock if name.startswith("nvidia-")]
    major, minor = map(int, lock["transformers"].split(".")[:2])
    assert (major, minor) >= (5, 24)  # generation/models.py passes `cache=`
    for tool in ("pip", "setuptools", "uv"):
        assert tool in lock


@pytest.mark.parametrize(
    ("venv", "problem"),
    [
        ({"a": "1.0"}, "b==2.0 is in the lock but not installed"),
        ({"a": "1.0", "b": "2.0", "c": "3"}, "c 3 is installed but not in the lock"),
        ({"a": "1.1", "b": "2.0"}, "a is 1.1, the lock says 1.0"),
        ({"a": "1.0", "b": "2.0+cpu"}, "b is 2.0+cpu, the lock says 2.0"),
    ],
    ids=["missing", "extra", "other version", "local label"],
)
def test_every_kind_of_difference_is_named(venv: dict[str, str], problem: str) -> None:
    assert differences({"a": "1.0", "b": "2.0"}, venv) == [problem]
    assert differences({"a": "1.0", "b": "2.0"}, {"a": "1.0", "b": "2.0", "music-lm": "0"}) == []


def test_a_line_that_is_not_an_exact_pin_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# a comment\nnumpy==2.0\n    # via x\ntorch>=2\n")
    with pytest.raises(ValueError, match=r"requirements.lock:4: not an exact pin: 'torch>=2'"):
        read_lock(lock)
    lock.write_text("Typing_Extensions==4.0\n")
    assert read_lock(lock) == {"typing-extensions": "4.0"}
