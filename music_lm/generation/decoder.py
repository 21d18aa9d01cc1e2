"""A lean decode step for GPT-2: one new token per row through the model's own weights,
with the keys and values in buffers allocated once.

    decoder = StaticDecoder.from_cache(model, cache, attention_mask, capacity)
    logits = decoder.step(ids, positions)      # ids, positions: [rows, 1] -> [rows, V]
    decoder.keep(rows)                         # finished rows leave the batch

transformers' own step spends most of its time around the arithmetic, not in it: module
calls, keyword plumbing, a causal mask built anew, and a KV cache grown by `torch.cat`, which
copies the whole cache at every token. This one calls the same kernels on the same
weights in the same order (`addmm` as GPT-2's Conv1D does, `scaled_dot_product_attention`
with the same scale and mask) and writes each new key and value into its slot of a
preallocated buffer instead of copying the cache.

Two modes:
- **exact** (`exact=True`, or $MUSIC_LM_DECODE_EXACT=1 for generation): keys and values in
  fp32 and the tanh GELU written out as transformers writes it, so the logits are those of
  the model's own forward pass, bit for bit, on the CPU (tests/test_decoder.py).
- **fast** (the default): GELU as one fused kernel (`F.gelu(approximate="tanh")`, the same
  formula rounded otherwise: logits within about 1e-5); keys and values in bf16 where the
  device computes it natively (AMX / AVX512-BF16 CPUs, GPUs that have it); and on such a
  CPU the blocks' weights in int8, one scale per output column (`int8_weights`). A decode
  step is memory-bound: it streams every weight and every cached key and value once.
  int8 weights and a bf16 cache took the shipped model's step from 3.0-3.2 to 1.7-1.8 ms at
  one row, with no measurable change in its test-split bits per note (bench/RESULTS.md,
  "Speed"). A given random seed still draws the same music on the same machine.

Prefill stays with transformers (one call per window); the cache it returns seeds the
buffers.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Sequence

import torch
from torch.nn import functional as F  # noqa: N812  (torch's own spelling)

from music_lm.training.build import native_bf16

_GELU_SCALE = math.sqrt(2.0 / math.pi)
EXACT_ENV = "MUSIC_LM_DECODE_EXACT"


def decode_exact() -> bool:
    """Whether generation decodes in the exact mode: $MUSIC_LM_DECODE_EXACT set to 1."""
    return os.environ.get(EXACT_ENV, "0").strip() not in ("", "0")


def int8_weights(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the fast mode keeps the blocks' weights in int8: an fp32 model on a CPU that
    computes bf16 natively, where torch's weight-only int8 kernel streams a quarter of the
    bytes (24 matrices of the default model took 0.57 ms against 1.35 in fp32;
    bench/RESULTS.md)."""
    return (
        device.type == "cpu"
        and dtype == torch.float32
        and hasattr(torch, "_weight_int8pack_mm")
        and native_bf16(cuda=False)
    )


def cache_dtype(device: torch.device, exact: bool = False) -> torch.dtype:
    """The keys' and values' dtype: bf16 where the device computes it natively, else fp32
    (emulated bf16 attention would cost more than the memory it saves)."""
    if exact or device.type not in ("cpu", "cuda"):
        return torch.float32
    return torch.bfloat16 if native_bf16(cuda=device.type == "cuda") else torch.float32


class StaticDecoder:
    """The decode step of a GPT-2 (transformers' GPT2LMHeadModel, no cross-attention) over
    a batch of rows whose keys and values sit in buffers of `capacity` positions."""

    def __init__(
        self,
        model: torch.nn.Module,
        keys: Sequence[torch.Tensor],
        values: Sequence[torch.Tensor],
        attended: torch.Tensor,
        capacity: int,
        exact: bool = False,
    ) -> None:
        """keys, values: per layer [rows or 1, heads, length, head size], what a prefill left
        (one row: shared by every row); attended: [rows, length] bool, the positions each row
        attends to (False: padding); exact: the exact mode (see the module's text)."""
        config = model.config
        _, heads, length, head_size = keys[0].shape
        rows = attended.shape[0]
        if length >= capacity:
            raise ValueError(f"a cache of {length} positions leaves no room in {capacity}")
        self.width = config.n_embd
        self.heads, self.head_size = heads, head_size
        self.scale = head_size**-0.5  # GPT-2's scale_attn_weights, not by layer index
        self.eps = config.layer_norm_epsilon
        transformer = model.transformer
        self.wte, self.wpe = transformer.wte.weight, transformer.wpe.weight
        self.final_norm = (transformer.ln_f.weight, transformer.ln_f.bias)
        self.head = model.lm_head.weight  # tied to wte in GPT-2; no bias
        like = keys[0]
        self.gelu = _gelu_new_ if exact else _gelu_fused
        self.int8 = not exact and int8_weights(like.device, self.wte.dtype)
        self.blocks = _blocks(model, self.int8)
        dtype = cache_dtype(like.device, exact) if like.dtype == torch.float32 else like.dtype
        # [layers, rows, heads, capacity, head size]: slot t holds position t's key/value.
        shape = (len(self.blocks), rows, heads, capacity, head_size)
        self.keys = torch.empty(shape, dtype=dtype, device=like.device)
        self.values = torch.empty(shape, dtype=dtype, device=like.device)
        # Queries go to the cache's dtype and attention comes back, unless the blocks
        # already compute in it (int8 weights: bf16 in and out).
        self.mixed = dtype != (torch.bfloat16 if self.int8 else like.dtype)
        for layer, (k, v) in enumerate(zip(keys, values, strict=True)):
            self.keys[layer, :, :, :length] = k
            self.values[layer, :, :, :length] = v
        # [rows, 1, 1, capacity] as SDPA takes a boolean mask: True where a row may attend.
        self.attended = torch.zeros((rows, 1, 1, capacity), dtype=torch.bool, device=like.device)
        self.attended[:, 0, 0, :length] = attended.to(like.device, torch.bool)
        self.padded = not bool(attended.all())
        self.length = length
        self.capacity = capacity

    @classmethod
    def from_cache(
        cls,
        model: torch.nn.Module,
        cache,
        attention_mask: torch.Tensor,
        capacity: int,
        exact: bool = False,
    ) -> StaticDecoder:
        """From the cache of a transformers forward pass (a DynamicCache) and its 2-D
        attention mask [rows, length] (1: a token, 0: padding); a cache of one row is shared
        by all of them."""
        layers = cache.layers
        return cls(model, [layer.keys for layer in layers], [layer.values for layer in layers],
                   attention_mask.bool(), capacity, exact)  # fmt: skip

    @property
    def rows(self) -> int:
        return self.keys.shape[1]

    @property
    def full(self) -> bool:
        return self.length >= self.capacity

    def keep(self, rows: torch.Tensor) -> None:
        """Only these rows (indices, in order) stay in the batch: a finished row stops costing
        compute. The buffers are copied once, as far as they are filled."""
        used = self.length
        shape = (self.keys.shape[0], len(rows), *self.keys.shape[2:])
        keys = self.keys.new_empty(shape)
        values = self.values.new_empty(shape)
        keys[:, :, :, :used] = self.keys[:, rows, :, :used]
        values[:, :, :, :used] = self.values[:, rows, :, :used]
        self.keys, self.values = keys, values
        self.attended = self.attended[rows]
        self.padded = not bool(self.attended[..., :used].all())

    @torch.inference_mode()
    def step(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits [rows, vocabulary] after one new token per row (ids, positions: [rows, 1])."""
        if self.full:
            raise ValueError(f"the decoder's {self.capacity} positions are all taken")
        # torch's C functions called directly (torch.layer_norm, narrow, select, unbind):
        # the step is a few hundred small calls, and F.*'s Python wrappers and tensor
        # indexing cost as much as some of the kernels (bench/RESULTS.md).
        at, used = self.length, self.length + 1
        rows, width, eps = ids.shape[0], self.width, self.eps
        split = (rows, 3, self.heads, self.head_size)
        self.attended.select(3, at).fill_(True)
        # A row without padding attends to everything: no mask, as transformers passes none.
        mask = self.attended.narrow(3, 0, used) if self.padded else None
        # [rows, width]; transformers adds the position embedding to the token's (same order)
        x = torch.embedding(self.wte, ids[:, 0]) + torch.embedding(self.wpe, positions[:, 0])
        for block, keys, values in zip(self.blocks, self.keys, self.values, strict=True):
            h = torch.layer_norm(x, (width,), block.norm_1[0], block.norm_1[1], eps)
            q, k, v = block.qkv(h).view(split).unbind(1)  # each [rows, heads, head size]
            keys.select(2, at).copy_(k)
            values.select(2, at).copy_(v)
            attention = F.scaled_dot_product_attention(
                q.unsqueeze(2).to(keys.dtype) if self.mixed else q.unsqueeze(2),
                keys.narrow(2, 0, used),
                values.narrow(2, 0, used),
                attn_mask=mask,
                scale=self.scale,
            ).view(rows, width)  # from [rows, heads, 1, head size]
            x = block.out(attention.to(x.dtype) if self.mixed else attention) + x
            h = torch.layer_norm(x, (width,), block.norm_2[0], block.norm_2[1], eps)
            x = x + block.down(self.gelu(block.up(h)))
        self.length = used
        x = torch.layer_norm(x, (width,), self.final_norm[0], self.final_norm[1], eps)
        return F.linear(x, self.head)


def _gelu_new_(h: torch.Tensor) -> torch.Tensor:
    """GPT-2's "gelu_new" in place, 0.5 h (1 + tanh(sqrt(2 / pi) (h + 0.044715 h^3))), with
    transformers' operations in transformers' order, so the same roundings (torch's
    F.gelu(approximate="tanh") is another kernel with others); no temporaries but one."""
    t = torch.pow(h, 3.0).mul_(0.044715).add_(h).mul_(_GELU_SCALE).tanh_().add_(1.0)
    return h.mul_(0.5).mul_(t)


def _gelu_fused(h: torch.Tensor) -> torch.Tensor:
    """The same tanh GELU as one kernel: a fifth of the step's elementwise launches."""
    return F.gelu(h, approximate="tanh")


class _Linear:
    """GPT-2's Conv1D as the step calls it: `addmm` on the weight as stored ([in, out])."""

    def __init__(self, conv: torch.nn.Module) -> None:
        self.weight, self.bias = conv.weight, conv.bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


class _Linear8:
    """The same layer with its weight in int8, one scale per output column (weight-only:
    the input goes in as bf16, `convert` says whether it must be converted first, and the
    output comes back in bf16)."""

    def __init__(self, conv: torch.nn.Module, convert: bool) -> None:
        weight = conv.weight.detach().float().t()  # [out, in]
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        quantized = (weight / scale[:, None]).round_().clamp_(-127, 127)
        self.weight = quantized.to(torch.int8).contiguous()
        self.scale = scale.to(torch.bfloat16)
        self.bias = conv.bias.detach().to(torch.bfloat16)
        self.convert = convert

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.bfloat16) if self.convert else x
        return torch._weight_int8pack_mm(x, self.weight, self.scale).add_(self.bias)


class _Block:
    """A GPT-2 block's weights as the step reads them."""

    def __init__(self, block: torch.nn.Module, int8: bool) -> None:
        attn, mlp = block.attn, block.mlp
        self.norm_1 = (block.ln_1.weight, block.ln_1.bias)
        self.norm_2 = (block.ln_2.weight, block.ln_2.bias)
        if int8:  # the normed stream comes in fp32; attention and GELU give bf16
            self.qkv, self.out = _Linear8(attn.c_attn, True), _Linear8(attn.c_proj, False)
            self.up, self.down = _Linear8(mlp.c_fc, True), _Linear8(mlp.c_proj, False)
        else:
            self.qkv, self.out = _Linear(attn.c_attn), _Linear(attn.c_proj)
            self.up, self.down = _Linear(mlp.c_fc), _Linear(mlp.c_proj)


# Quantizing the default model's blocks takes about 30 ms: done once per model and reused
# by every decoder (each re-window builds one) until a weight changes in place.
_INT8_BLOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _blocks(model: torch.nn.Module, int8: bool) -> list[_Block]:
    """The model's blocks as the step reads them; int8 ones from the cache while the
    weights' versions (bumped by every in-place change, an optimizer step's too) hold."""
    blocks = model.transformer.h
    if not int8:
        return [_Block(block, False) for block in blocks]
    versions = tuple(p._version for p in model.parameters())
    cached = _INT8_BLOCKS.get(model)
    if cached is None or cached[0] != versions:
        cached = (versions, [_Block(block, True) for block in blocks])
        _INT8_BLOCKS[model] = cached
    return cached[1]


def supports(model: torch.nn.Module) -> bool:
    """Whether `model` is a GPT-2 this decoder steps exactly as transformers does: the
    activation, attention scaling and layout it writes out."""
    config = getattr(model, "config", None)
    return (
        getattr(config, "model_type", None) == "gpt2"
        and config.activation_function == "gelu_new"
        and config.scale_attn_weights
        and not config.scale_attn_by_inverse_layer_idx
        and not config.reorder_and_upcast_attn
        and not getattr(config, "add_cross_attention", False)
        and hasattr(model, "lm_head")
        and getattr(model.lm_head, "bias", None) is None
    )
