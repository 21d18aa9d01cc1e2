"""The lean decode step (music_lm.generation.decoder) and how sampling uses it.

In its exact mode it gives transformers' own logits bit for bit, so a random seed draws the
same music either way; in its fast mode (the default) within rounding; rows that read the
same seed share one prefill; a row that ends leaves the batch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from music_lm.generation import decoder as decoder_module
from music_lm.generation import models as models_module
from music_lm.generation.constraints import Constraints
from music_lm.generation.decoder import StaticDecoder, cache_dtype, decode_exact, supports
from music_lm.generation.models import _Runner
from music_lm.generation.runner import generate
from music_lm.model.folder import load_model, model_config, new_model
from music_lm.tokens.vocab import VOCAB

EXAMPLES = Path(__file__).resolve().parent.parent / "midi_in"
SEED = EXAMPLES / "folk_tune.mid"


@pytest.fixture(scope="module")
def gpt2() -> torch.nn.Module:
    """A small random GPT-2 of the shipped model's shape in miniature: 3 layers, 4 heads."""
    torch.manual_seed(1)
    return new_model(model_config("tiny", context=128, n_layer=3, n_head=4, n_embd=64)).eval()


def transformers_steps(model, ids, mask, new_ids) -> list[torch.Tensor]:
    """The logits of each new token through transformers' forward pass and cache."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, position, logits = out.cache, positions[:, -1:] + 1, []
    for column in range(new_ids.shape[1]):
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        out = model(input_ids=new_ids[:, column : column + 1], attention_mask=mask,
                    position_ids=position, cache=cache, use_cache=True)  # fmt: skip
        cache, position = out.cache, position + 1
        logits.append(out.logits[:, -1, :])
    return logits


def decoder_steps(model, ids, mask, new_ids, capacity=128, exact=True) -> list[torch.Tensor]:
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    decoder = StaticDecoder.from_cache(model, out.cache, mask, capacity, exact=exact)
    position = positions[:, -1:] + 1
    logits = []
    for column in range(new_ids.shape[1]):
        logits.append(decoder.step(new_ids[:, column : column + 1], position))
        position = position + 1
    return logits


@pytest.mark.parametrize("padding", [[0], [0, 7, 2]], ids=["one row", "three rows, padded"])
@torch.inference_mode()
def test_the_decoders_logits_are_transformers_bit_for_bit(gpt2, padding: list[int]) -> None:
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(0, len(VOCAB), (len(padding), 20), generator=generator)
    mask = torch.ones_like(ids)
    for row, pads in enumerate(padding):
        mask[row, :pads] = 0
    new_ids = torch.randint(0, len(VOCAB), (len(padding), 30), generator=generator)
    theirs = transformers_steps(gpt2, ids, mask, new_ids)
    ours = decoder_steps(gpt2, ids, mask, new_ids)
    for step, (a, b) in enumerate(zip(theirs, ours, strict=True)):
        assert torch.equal(a, b), f"step {step}: largest difference {(a - b).abs().max()}"


@pytest.mark.parametrize(
    ("cache", "int8", "tolerance"),
    [(torch.float32, False, 1e-4), (torch.bfloat16, False, 3e-2), (torch.bfloat16, True, 6e-2)],
    ids=["fused GELU", "bf16 cache", "bf16 cache, int8 weights"],
)
@torch.inference_mode()
def test_the_fast_modes_logits_are_transformers_within_rounding(
    gpt2, cache: torch.dtype, int8: bool, tolerance: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fused GELU moves logits by float rounding; a bf16 cache by bf16's (8 bits of
    mantissa on each key and value); int8 weights by a 254th of each column's largest
    weight: each small against the logits' spread, and the distributions stay close
    (measured: KL divergence below 2e-6 nats at every step of every mode)."""
    if int8 and not decoder_module.int8_weights(torch.device("cpu"), torch.float32):
        pytest.skip("this CPU has no native bf16 for the int8 kernel")
    monkeypatch.setattr(decoder_module, "cache_dtype", lambda _device, exact=False: cache)
    monkeypatch.setattr(decoder_module, "int8_weights", lambda _device, _dtype: int8)
    generator = torch.Generator().manual_seed(4)
    ids = torch.randint(0, len(VOCAB), (3, 20), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :6] = 0
    new_ids = torch.randint(0, len(VOCAB), (3, 30), generator=generator)
    theirs = transformers_steps(gpt2, ids, mask, new_ids)
    ours = decoder_steps(gpt2, ids, mask, new_ids, exact=False)
    for step, (a, b) in enumerate(zip(theirs, ours, strict=True)):
        spread = max(float(a.std()), 1.0)
        assert (a - b).abs().max() <= tolerance * spread, f"step {step}"
        kl = F.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True, reduction="none")
        assert kl.sum(-1).max() < 1e-4, f"step {step}"  # a wrong step gives 1e-1 and more


def test_the_cache_is_bf16_only_where_the_device_computes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = torch.device("cpu")
    assert cache_dtype(cpu, exact=True) == torch.float32
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda n=native: n)
        assert cache_dtype(cpu) == dtype


@pytest.mark.parametrize(("value", "exact"), [(None, False), ("0", False), ("1", True)])
def test_exact_decoding_is_asked_for_by_the_environment(
    value: str | None, exact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(decoder_module.EXACT_ENV, raising=False)
    else:
        monkeypatch.setenv(decoder_module.EXACT_ENV, value)
    assert decode_exact() is exact


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
@torch.inference_mode()
def test_rows_left_in_the_batch_go_on_as_before(gpt2, padded: bool) -> None:
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, len(VOCAB), (3, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :5] = 0 if padded else 1
    out = gpt2(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
               use_cache=True)  # fmt: skip
    decoder = StaticDecoder.from_cache(gpt2, out.cache, mask, 64)
    whole = StaticDecoder.from_cache(gpt2, out.cache, mask, 64)
    positions = mask.sum(-1, keepdim=True)
    token = torch.tensor([[5], [6], [7]])
    for step in range(4):  # tokens the rows attend to after the batch shrinks
        decoder.step(token + step, positions + step)
        whole.step(token + step, positions + step)
    decoder.keep(torch.tensor([1, 2]))  # row 0 ended
    assert decoder.rows == 2
    assert decoder.padded is padded
    kept = decoder.step(token[1:] + 4, positions[1:] + 4)
    both = whole.step(token + 4, positions + 4)[1:]
    assert torch.allclose(kept, both, atol=1e-5)
    decoder.keep(torch.tensor([1]))  # row 1 ended too: the one left has no padding
    assert decoder.rows == 1
    assert not decoder.padded


def test_a_full_decoder_says_so(gpt2) -> None:
    ids = torch.zeros((1, 8), dtype=torch.long)
    with torch.inference_mode():
        cache = gpt2(input_ids=ids, use_cache=True).cache
    with pytest.raises(ValueError, match="a cache of 8 positions leaves no room in 8"):
        StaticDecoder.from_cache(gpt2, cache, torch.ones_like(ids), 8)
    decoder = StaticDecoder.from_cache(gpt2, cache, torch.ones_like(ids), 9)
    decoder.step(ids[:, :1], torch.tensor([[8]]))
    assert decoder.full
    with pytest.raises(ValueError, match="the decoder's 9 positions are all taken"):
        decoder.step(ids[:, :1], torch.tensor([[9]]))


def test_only_models_it_steps_exactly_are_supported(gpt2) -> None:
    assert supports(gpt2)
    other = new_model(model_config("tiny", context=64))
    other.config.activation_function = "gelu"
    assert not supports(other)


def test_sampling_draws_the_same_music_with_or_without_the_decoder(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One row, the exact mode: the same ids for the same random seed (context 64:
    re-windows included)."""
    monkeypatch.setenv(decoder_module.EXACT_ENV, "1")
    loaded = [load_model(tiny_model)]

    def draw() -> list[int]:
        generation = generate(SEED, seed_bars=2, constraints=Constraints(bars=2),
                              random_seed=5, loaded=loaded, models=["tiny"], retries=0)  # fmt: skip
        return generation.variants[0].ids

    lean = draw()
    monkeypatch.setattr(models_module, "supports", lambda _model: False)
    assert draw() == lean


def test_variants_share_one_prefill_and_finished_rows_leave_the_batch(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = [load_model(tiny_model)]
    prefill_rows: list[int] = []
    step_rows: list[int] = []
    forward = _Runner._forward

    def watching(self, ids, positions):
        (step_rows if self.decoder is not None else prefill_rows).append(ids.shape[0])
        return forward(self, ids, positions)

    monkeypatch.setattr(_Runner, "_forward", watching)
    generation = generate(SEED, seed_bars=2, constraints=Constraints(bars=1), variants=4,
                          random_seed=3, loaded=loaded, models=["tiny"], retries=0)  # fmt: skip
    lengths = sorted(v.new_tokens for v in generation.variants)
    assert prefill_rows[0] == 1  # the seed, read once for the four variants
    assert step_rows == sorted(step_rows, reverse=True)  # the batch only shrinks
    assert lengths[0] < lengths[-1]
    # Each drawn token but a row's last is read by one step (or a re-window's prefill) of
    # the rows still drawing, and nothing else is computed.
    assert sum(step_rows) + sum(prefill_rows[1:]) == sum(lengths) - len(lengths)
    assert step_rows.count(4) < lengths[0]
