"""A run folder on disk: its checkpoints (each a model folder plus training_state.pt), the
random states they carry, the settings a resume must keep, and writing each file or folder
aside and moving it into place whole, so that an interruption leaves only whole ones."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from music_lm.corpus.dataset import WindowSampler
from music_lm.model.folder import error_line, publish_files, replace_folder, save_model_folder
from music_lm.training.config import CONFIG_FILE, RESUMABLE_CHANGES, TrainConfig, TrainError

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "training_state.pt"
BEST_STAGING = ".best.tmp"  # the run's top-level model, before its files move into place


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    """The complete checkpoints of a run, by step."""
    found = []
    for path in run.glob(f"{CHECKPOINT_PREFIX}*"):
        step = path.name.removeprefix(CHECKPOINT_PREFIX)
        if step.isdigit() and (path / STATE_FILE).is_file():
            found.append((int(step), path))
    return sorted(found)


def load_state(file: Path) -> dict:
    """A checkpoint's training state. Only with `weights_only=True`: a pickle from elsewhere
    cannot run code; one that needs more than tensors and plain data is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4": noise here
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, EOFError...: all unusable
        raise TrainError(
            f"{file}: not a training state music_lm can read safely ({error_line(err)[:200]}); "
            f"delete {file.parent.name} to resume from the checkpoint before it"
        ) from None
    if not isinstance(state, dict) or "step" not in state:
        raise TrainError(f"{file}: not a training state (no step)")
    return state


def rng_state(sampler: WindowSampler) -> dict:
    state = {"torch": torch.get_rng_state(), "sampler": sampler.rng.bit_generator.state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, sampler: WindowSampler) -> None:
    torch.set_rng_state(state["torch"])
    sampler.rng.bit_generator.state = state["sampler"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_weights(model: torch.nn.Module, checkpoint: Path, config: TrainConfig) -> None:
    """Put a checkpoint's weights into the training model (for LoRA: its adapters)."""
    if config.lora_rank:
        # peft only for LoRA runs
        from peft import set_peft_model_state_dict

        adapter = load_file(str(checkpoint / "adapter" / "adapter_model.safetensors"))
        set_peft_model_state_dict(model, adapter)
        return

    state = load_file(str(checkpoint / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied output weights are saved once; anything else missing is a foreign checkpoint.
    missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise TrainError(f"{checkpoint}: weights do not fit the model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")  # fmt: skip


def resolve_config(config: TrainConfig, run: Path, given: set[str]) -> TrainConfig:
    """The settings of a run folder that exists, with the changes a resume may make. A run
    with no checkpoint yet has trained nothing: it starts again with the new settings."""
    saved_path = run / CONFIG_FILE
    if not saved_path.is_file():
        if run.exists() and any(p for p in run.iterdir() if not p.name.startswith(".")):
            raise TrainError(
                f"{run}: exists and is not a music_lm run folder; choose another --output"
            )
        return config
    if not checkpoints(run):
        return config
    try:
        saved = TrainConfig.from_json(json.loads(saved_path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError) as err:
        raise TrainError(f"{saved_path}: unreadable run settings ({err})") from None
    changed = {
        name for name in given
        if getattr(config, name) != getattr(saved, name) and name not in RESUMABLE_CHANGES
    }  # fmt: skip
    if changed:
        was = ", ".join(f"{n}={getattr(saved, n)!r}" for n in sorted(changed))
        raise TrainError(
            f"{run}: this run was started with {was}; resuming cannot change that "
            f"(use another --output for a new run)"
        )
    return replace(saved, **{n: getattr(config, n) for n in given if n in RESUMABLE_CHANGES})


def write_json(path: Path, data: dict) -> None:
    """Write a JSON file whole or not at all (temporary file, flush, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def file_sha256(path: Path) -> str | None:

    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def clean_staging(run: Path) -> None:
    """Remove what an interrupted save left: hidden temporary folders and files."""
    for stale in run.glob(".*"):
        if stale.name.endswith((".tmp", ".old")) or ".tmp." in stale.name:
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def publish_best(plain: torch.nn.Module, run: Path, meta: dict, tokenizer) -> None:
    """The run's top-level model folder (the best by validation): written aside, then its
    files moved into place."""
    top = run / BEST_STAGING
    shutil.rmtree(top, ignore_errors=True)
    save_model_folder(plain, top, meta, tokenizer)
    publish_files(top, run)


def write_checkpoint(
    plain: torch.nn.Module,
    run: Path,
    step: int,
    meta: dict,
    tokenizer,
    state: dict,
    adapters: torch.nn.Module | None = None,
) -> None:
    """checkpoint-STEP: the model folder, the LoRA `adapters` (if any) and the training
    `state`, written aside and renamed into place whole."""
    staging = run / f".{CHECKPOINT_PREFIX}{step}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    save_model_folder(plain, staging, meta, tokenizer)
    if adapters is not None:
        # The adapters alone: a resume builds the base again as it was (a base of an older
        # vocabulary extended the same way, build.extend_vocabulary), so peft's copy of the
        # resized embeddings it would otherwise add is not needed.
        adapters.save_pretrained(staging / "adapter", save_embedding_layers=False)
    torch.save(state, staging / STATE_FILE)
    with open(staging / STATE_FILE, "rb") as handle:
        os.fsync(handle.fileno())
    replace_folder(staging, run / f"{CHECKPOINT_PREFIX}{step}")


def save_failed(run: Path, step: int, err: OSError) -> TrainError:
    """The error for a save of `step` that failed (a full disk, a quota, a folder gone), once
    what it left half-written is removed: the checkpoints saved before are intact."""
    for leftover in (run / BEST_STAGING, run / f".{CHECKPOINT_PREFIX}{step}.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    saved = checkpoints(run)
    kept = saved[-1][1].name if saved else "none yet"
    return TrainError(
        f"{run}: cannot save step {step} ({err.strerror or err}); the checkpoints "
        f"saved before are intact (the last: {kept}); free some space and run the "
        "same command to resume"
    )
