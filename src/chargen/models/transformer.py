"""A small decoder-only Transformer with a sliding-window KV cache.

Blocks are pre-norm: ``x += Attn(LN(x)); x += MLP(LN(x))`` with causal multi-head attention
(``F.scaled_dot_product_attention``) and a 4x GELU MLP. Every query attends to the keys of
the last ``context_size`` positions, itself included (a sliding window), so training on
windows of ``context_size`` tokens and generating forever agree.

State (batch is dim 1 of every tensor):

- ``k``, ``v``: (layers, B, heads, context_size, head_dim) ring buffers; position ``p`` lives in
  slot ``p % context_size`` (keys are stored already rotated);
- ``pos``: (1, B) int64, how many tokens each row has read (rows may differ: the server batches
  requests of different lengths);
- learned positions only, ``tokens``: (1, B, context_size) the ids in the same ring.

With rotary positions (default) a new token costs one cached step however long the text is,
because attention scores depend only on the distance between positions. Learned positions are
absolute, so once a row has read ``context_size`` tokens each new token re-reads the last
``context_size`` ids from scratch (as nanoGPT's sampler does): same results, more work.

The cache tensors of ``state`` are updated in place and returned; callers that need the old
state keep a copy (``select_state`` and ``expand_state`` make copies).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from chargen.config import ModelConfig
from chargen.models.base import LanguageModel, State, tie_or_project


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (Su et al. 2021), halves convention: ``x * cos + rotate_half(x) * sin``.

    x (B, H, T, D); cos, sin (B, 1, T, D/2).
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class Block(nn.Module):
    """Pre-norm causal self-attention and MLP with residual connections."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.fc_out = nn.Linear(4 * width, width)
        self.act = nn.GELU()  # a module, so --clamp can hold its outputs (clamp.py)
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)

    def project(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, W) -> q, k, v each (B, H, T, W/H), q and k rotated when ``rope`` is given."""
        b, t, w = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, w // self.heads).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        return q, k, v

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Residual adds after attention (B, H, T, D) and the MLP."""
        b, h, t, d = attended.shape
        x = x + self.drop(self.out(attended.transpose(1, 2).reshape(b, t, h * d)))
        return x + self.drop(self.fc_out(self.act(self.fc(self.ln2(x)))))


class TransformerLanguageModel(LanguageModel):
    """Embedding [-> width map] [+ learned positions] -> blocks -> LayerNorm -> head."""

    carries_state = False  # each training window starts fresh, as GPT training does
    inv_freq: torch.Tensor  # a buffer (register_buffer), rotary frequencies (head_dim / 2,)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        vocab, width, dim = config.vocab_size, config.hidden_size, config.embed_dim
        self.context = config.context_size
        self.heads = config.num_heads
        self.head_dim = width // config.num_heads
        self.rotary = config.positions == "rotary"
        self.embed = nn.Embedding(vocab, dim)
        self.embed_proj = nn.Linear(dim, width, bias=False) if dim != width else None
        self.pos_embed = None if self.rotary else nn.Embedding(self.context, width)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(width, config.num_heads, config.dropout) for _ in range(config.num_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.proj, self.head = tie_or_project(self.embed, width, vocab, config.tie_weights)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._init_weights(config.num_layers)

    def _init_weights(self, layers: int) -> None:
        """GPT-2 initialisation: N(0, 0.02), residual outputs scaled by 1/sqrt(2 layers)."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = (
                    0.02 / math.sqrt(2 * layers)
                    if name.endswith(("out.weight", "fc_out.weight"))
                    else 0.02
                )
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def typed_blocks(self) -> Iterable[Block]:
        """``blocks`` as what they are: ``nn.ModuleList`` iterates as plain ``nn.Module``s."""
        # cast: __init__ fills the list with Block instances only
        return cast("Iterable[Block]", self.blocks)

    # ------------------------------------------------------------------ pieces
    def _embed(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        if self.embed_proj is not None:
            x = self.embed_proj(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        return self.drop(x)

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos, sin (B, 1, T, D/2) for positions (B, T)."""
        if not self.rotary:
            return None
        angles = positions[:, None, :, None].to(self.inv_freq.dtype) * self.inv_freq
        return angles.cos(), angles.sin()

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.norm(x))
        if self.proj is not None:
            x = self.proj(x)
        return self.head(x)

    # ------------------------------------------------------------------ interface
    def initial_state(self, batch_size: int, device: torch.device | str = "cpu") -> State:
        """Empty caches and zero positions for ``batch_size`` rows."""
        layers = self.config.num_layers
        shape = (layers, batch_size, self.heads, self.context, self.head_dim)
        dtype = self.head.weight.dtype
        state = [
            torch.zeros(shape, device=device, dtype=dtype),
            torch.zeros(shape, device=device, dtype=dtype),
            torch.zeros((1, batch_size), device=device, dtype=torch.long),
        ]
        if not self.rotary:
            state.append(
                torch.zeros((1, batch_size, self.context), device=device, dtype=torch.long)
            )
        return tuple(state)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits for every position of ``ids`` (B, T) after ``state``; see the module notes.

        In training mode with ``state=None`` no cache is kept and the returned state is ``()``.
        """
        b, t = ids.shape
        if state is None and t <= self.context:
            logits, keys = self._fresh(ids, keep=not self.training)
            if self.training:
                return logits, ()
            state = self.initial_state(b, ids.device)
            self._store(state, keys, torch.arange(t, device=ids.device).expand(b, t))
            state[2].fill_(t)
            if not self.rotary:
                state[3][0, :, :t] = ids
            return logits, state
        if state is None:
            state = self.initial_state(b, ids.device)
        if self.rotary:
            return self._cached(ids, state), state
        return self._learned_steps(ids, state), state

    def _fresh(
        self, ids: torch.Tensor, keep: bool
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Causal attention over ``ids`` alone (T <= context), positions 0..T-1."""
        b, t = ids.shape
        positions = torch.arange(t, device=ids.device).expand(b, t)
        x = self._embed(ids, positions)
        rope = self._rope(positions)
        keys: list[tuple[torch.Tensor, torch.Tensor]] = []
        p = self.config.dropout if self.training else 0.0
        for block in self.typed_blocks():
            q, k, v = block.project(x, rope)
            if keep:
                keys.append((k, v))
            x = block.finish(
                x, F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            )
        return self._logits(x), keys

    def _cached(self, ids: torch.Tensor, state: State) -> torch.Tensor:
        """Attend over the cache and the new tokens (sliding window), then store the new keys."""
        b, t = ids.shape
        ctx, device = self.context, ids.device
        start = state[2][0]  # (B,)
        positions = start[:, None] + torch.arange(t, device=device)  # (B, T)
        slots = torch.arange(ctx, device=device)
        # the position held by each cache slot: the latest p < start with p % ctx == slot
        held = start[:, None] - 1 - torch.remainder(start[:, None] - 1 - slots, ctx)  # (B, ctx)
        key_pos = torch.cat((held, positions), dim=1)  # (B, ctx + T)
        gap = positions[:, :, None] - key_pos[:, None, :]  # (B, T, ctx + T)
        present = torch.cat((held >= 0, torch.ones_like(positions, dtype=torch.bool)), dim=1)
        mask = (present[:, None, :] & (gap >= 0) & (gap < ctx))[:, None]  # (B, 1, T, ctx + T)
        x = self._embed(ids, positions)
        rope = self._rope(positions)
        keys: list[tuple[torch.Tensor, torch.Tensor]] = []
        p = self.config.dropout if self.training else 0.0
        for layer, block in enumerate(self.typed_blocks()):
            q, k, v = block.project(x, rope)
            keys.append((k, v))
            all_k = torch.cat((state[0][layer], k), dim=2)
            all_v = torch.cat((state[1][layer], v), dim=2)
            attended = F.scaled_dot_product_attention(q, all_k, all_v, attn_mask=mask, dropout_p=p)
            x = block.finish(x, attended)
        self._store(state, keys, positions)
        state[2].add_(t)
        return self._logits(x)

    def _store(
        self, state: State, keys: list[tuple[torch.Tensor, torch.Tensor]], positions: torch.Tensor
    ) -> None:
        """Write the keys / values of the last ``context`` positions into their ring slots."""
        t = positions.shape[1]
        w = min(t, self.context)
        slots = torch.remainder(positions[:, t - w :], self.context)  # (B, w)
        index = slots[:, None, :, None].expand(-1, self.heads, -1, self.head_dim)
        for layer, (k, v) in enumerate(keys):
            state[0][layer].scatter_(2, index, k[:, :, t - w :].detach().to(state[0].dtype))
            state[1][layer].scatter_(2, index, v[:, :, t - w :].detach().to(state[1].dtype))

    def _learned_steps(self, ids: torch.Tensor, state: State) -> torch.Tensor:
        """Learned positions: cached steps while a row fits the context, else re-read the window."""
        start = state[2][0]
        if bool((start + ids.shape[1] <= self.context).all()):
            self._remember(ids, state)
            return self._cached(ids, state)
        outputs = []
        for j in range(ids.shape[1]):
            token = ids[:, j : j + 1]
            fits = state[2][0] < self.context
            logits = torch.empty(
                (ids.shape[0], 1, self.config.vocab_size),
                device=ids.device,
                dtype=self.head.weight.dtype,
            )
            self._remember(token, state)
            if bool(fits.any()):
                rows = fits.nonzero().squeeze(1)
                sub = tuple(s.index_select(1, rows) for s in state)
                logits[rows] = self._cached(token[rows], sub).to(logits.dtype)
                for full, part in zip(state, sub, strict=True):
                    full.index_copy_(1, rows, part)
            if not bool(fits.all()):
                rows = (~fits).nonzero().squeeze(1)
                logits[rows] = self._reread(state, rows).to(logits.dtype)
                state[2][0, rows] += 1
            outputs.append(logits)
        return torch.cat(outputs, dim=1)

    def _remember(self, ids: torch.Tensor, state: State) -> None:
        """Put ``ids`` into the token ring at their positions (before ``pos`` advances)."""
        positions = state[2][0][:, None] + torch.arange(ids.shape[1], device=ids.device)
        state[3][0].scatter_(1, torch.remainder(positions, self.context), ids)

    def _reread(self, state: State, rows: torch.Tensor) -> torch.Tensor:
        """Logits (R, 1, V) for the newest token of ``rows``, from their last ``context`` ids."""
        last = state[2][0, rows]  # position of the newest token
        offsets = torch.arange(self.context - 1, -1, -1, device=rows.device)
        order = torch.remainder(last[:, None] - offsets, self.context)  # oldest .. newest
        window = state[3][0, rows].gather(1, order)
        logits, _ = self._fresh(window, keep=False)
        return logits[:, -1:]
