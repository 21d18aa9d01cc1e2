"""Model folders and checkpoints from elsewhere: only safetensors weights are read, pickles
only with `weights_only=True`, never remote code, and a folder is checked before it is used.

Each malicious file here would create a marker file if it were ever unpickled or executed."""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from music_lm.model.folder import ModelError, load_model  # noqa: E402
from music_lm.training.config import TrainConfig, TrainError  # noqa: E402
from music_lm.training.loop import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this touches `marker`: proof that the pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def malicious_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"state": _Payload(marker)}))


def test_pickle_weights_are_never_loaded(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    malicious_pickle(folder / "pytorch_model.bin", marker)
    with pytest.raises(ModelError) as caught:
        load_model(folder)
    assert str(caught.value).startswith(f"{folder}: ")
    assert "safetensors" in str(caught.value)
    assert not marker.exists()


def test_remote_code_is_never_run(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "remote"
    shutil.copytree(tiny_model, folder)
    marker = tmp_path / "ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    # A GPT-2 config in every other respect: refused for its auto_map alone (a config of
    # another model_type is refused before, and would not test this door).
    assert config["model_type"] == "gpt2"
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="auto_map") as caught:
        load_model(folder)
    assert str(caught.value).startswith(f"{folder}: ")
    assert not marker.exists()


def test_a_config_that_does_not_fit_the_vocabulary_is_refused(tiny_model, tmp_path) -> None:
    folder = tmp_path / "small-vocab"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 100
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"vocab_size 100, the music tokens need"):
        load_model(folder)


def test_a_malicious_checkpoint_state_is_refused_on_resume(tiny_corpus, tmp_path) -> None:
    run = tmp_path / "run"
    settings = TrainConfig(data=(str(tiny_corpus.folder),), output=str(run), preset="tiny",
                           context=64, batch_size=4, max_steps=4, save_every=2, eval_every=100,
                           progress=False)  # fmt: skip
    train(settings, log=lambda _m: None, stop_after=2)
    state = run / "checkpoint-2" / "training_state.pt"
    marker = tmp_path / "ran"
    malicious_pickle(state, marker)
    with pytest.raises(TrainError) as caught:
        train(settings, given={"output"}, log=lambda _m: None)
    message = str(caught.value)
    assert message.startswith(f"{state}: ")
    assert "\n" not in message
    assert not marker.exists()


def test_the_source_loads_no_pickle_and_no_remote_code() -> None:
    """A rule the code keeps: the tests above try the doors, this reads the locks."""
    for path in sorted((ROOT / "music_lm").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert "trust_remote_code=True" not in source, path
        for call in re.findall(r"torch\.load\([^)]*\)", source):
            assert "weights_only=True" in call, f"{path}: {call}"
        # (the calls on a variable; a quoted name is a usage example in a docstring)
        for call in re.findall(r"ForCausalLM\.from_pretrained\(\s*[^\s\"'][^)]*\)", source):
            assert "use_safetensors=True" in call, f"{path}: {call}"
