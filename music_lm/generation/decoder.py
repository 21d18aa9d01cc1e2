"""A lean decode step for GPT-2: one new token per row through the model's own weights,
with the keys and values in buffers allocated once.

    decoder = StaticDecoder.from_cache(model, cache, attention_mask, capacity)
    logits = decoder.step(ids, positions)      # ids, positions: [rows, 1] -> [rows, V]
    decoder.keep(rows)                         # finished rows leave the batch

transformers' own step spends most of its time around the arithmetic, not in it: module
calls, keyword plumbing, a causal mask built anew, and a KV cache grown by `torch.cat`, which
copies the whole cache at every token. This one calls the same kernels on the same
weights in the same order (`addmm` as GPT-2's Conv1D does, the tanh GELU formula written
out as transformers writes it, `scaled_dot_product_attention` with the same scale and mask),
so its logits are those of the model's own forward pass, bit for bit, on the CPU
(tests/test_decoder.py). Writing each new key and value into its slot of a preallocated
buffer replaces the copy of the cache.

Prefill stays with transformers (one call per window); the cache it returns seeds the
buffers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F  # noqa: N812  (torch's own spelling)

_GELU_SCALE = math.sqrt(2.0 / math.pi)


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
    ) -> None:
        """keys, values: per layer [rows or 1, heads, length, head size], what a prefill left
        (one row: shared by every row); attended: [rows, length] bool, the positions each row
        attends to (False: padding)."""
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
        self.layers = [_layer_weights(block) for block in transformer.h]
        like = keys[0]
        # [layers, rows, heads, capacity, head size]: slot t holds position t's key/value.
        shape = (len(self.layers), rows, heads, capacity, head_size)
        self.keys = torch.empty(shape, dtype=like.dtype, device=like.device)
        self.values = torch.empty(shape, dtype=like.dtype, device=like.device)
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
        cls, model: torch.nn.Module, cache, attention_mask: torch.Tensor, capacity: int
    ) -> StaticDecoder:
        """From the cache of a transformers forward pass (a DynamicCache) and its 2-D
        attention mask [rows, length] (1: a token, 0: padding); a cache of one row is shared
        by all of them."""
        layers = cache.layers
        return cls(model, [layer.keys for layer in layers], [layer.values for layer in layers],
                   attention_mask.bool(), capacity)  # fmt: skip

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
        at = self.length
        rows, width = ids.shape[0], self.width
        shape = (rows, self.heads, self.head_size)
        self.attended[:, 0, 0, at] = True
        # A row without padding attends to everything: no mask, as transformers passes none.
        mask = self.attended[..., : at + 1] if self.padded else None
        # [rows, width]; transformers adds the position embedding to the token's (same order)
        x = F.embedding(ids[:, 0], self.wte) + F.embedding(positions[:, 0], self.wpe)
        for w, keys, values in zip(self.layers, self.keys, self.values, strict=True):
            h = F.layer_norm(x, (width,), w[0], w[1], self.eps)
            q, k, v = torch.addmm(w[3], h, w[2]).split(width, dim=1)  # each [rows, width]
            keys[:, :, at] = k.view(shape)
            values[:, :, at] = v.view(shape)
            attention = F.scaled_dot_product_attention(
                q.view(rows, self.heads, 1, self.head_size),
                keys[:, :, : at + 1],
                values[:, :, : at + 1],
                attn_mask=mask,
                scale=self.scale,
            )  # [rows, heads, 1, head size]
            x = torch.addmm(w[5], attention.view(rows, width), w[4]) + x
            h = F.layer_norm(x, (width,), w[6], w[7], self.eps)
            h = torch.addmm(w[9], h, w[8])
            x = x + torch.addmm(w[11], _gelu_new_(h), w[10])
        self.length = at + 1
        x = F.layer_norm(x, (width,), self.final_norm[0], self.final_norm[1], self.eps)
        return F.linear(x, self.head)


def _gelu_new_(h: torch.Tensor) -> torch.Tensor:
    """GPT-2's "gelu_new" in place, 0.5 h (1 + tanh(sqrt(2 / pi) (h + 0.044715 h^3))), with
    transformers' operations in transformers' order, so the same roundings (torch's
    F.gelu(approximate="tanh") is another kernel with others); no temporaries but one."""
    t = torch.pow(h, 3.0).mul_(0.044715).add_(h).mul_(_GELU_SCALE).tanh_().add_(1.0)
    return h.mul_(0.5).mul_(t)


def _layer_weights(block: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """A GPT-2 block's weights in the order `step` reads them (Conv1D weights are stored
    [in, out], as addmm takes them)."""
    attn, mlp = block.attn, block.mlp
    return (
        block.ln_1.weight, block.ln_1.bias, attn.c_attn.weight, attn.c_attn.bias,
        attn.c_proj.weight, attn.c_proj.bias, block.ln_2.weight, block.ln_2.bias,
        mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias,
    )  # fmt: skip


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
