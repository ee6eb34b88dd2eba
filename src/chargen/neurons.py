"""Record what every unit of a model does on each character of a text, and find the units that
follow a feature of the text.

A *unit* is one number of the model's state, named ``layer:kind:index``: for an LSTM each
layer's cell state ``c`` (``cell``) and hidden state ``h`` (``hidden``); for a GRU each layer's
hidden state; for the Transformer each block's MLP hidden units after the GELU (``mlp``,
4 x width per block). Layers count from 0, as PyTorch names its weights.

The model reads the text after the start token an empty prompt uses (``generate.start_token``),
so row ``i`` of a recording is the state after reading character ``i``, and its guesses are
the model's most likely next characters there (what it expects at ``i + 1``).

Recurrent layers run one at a time through PyTorch's fused kernel (a one-layer copy of each
layer), which returns ``h`` at every position. An LSTM's cell state is then recovered exactly:
with ``h`` known everywhere, the gates of all positions are one matrix product
(``W_ih x_t + W_hh h_{t-1} + b``) and ``c_t = f_t * c_{t-1} + i_t * g_t`` is an elementwise
recurrence. Gate order follows PyTorch: ``i, f, g, o``.

Correlations are Pearson's r, vectorised: centre each column, one matrix product, divide by
the norms; a constant column (a feature absent from the text, a dead unit) has r = 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from chargen.atomic import available_memory
from chargen.errors import ConfigError
from chargen.generate import start_token
from chargen.models import LanguageModel, RNNLanguageModel, TransformerLanguageModel
from chargen.tokenizer import Tokenizer
from chargen.units import Group, unit_column, unit_groups

TOP_GUESSES = 5
CHUNK = 4096  # positions per pass: bounds the gate temporaries (CHUNK x 4 hidden floats)
UNIT_BLOCK = 512  # units per block of the correlation product (bounds the centred copy)


@dataclass
class Recording:
    """Activations (n, units) float32 of every unit after each character, and the guesses."""

    text: str
    activations: np.ndarray
    groups: list[Group]
    guess_ids: np.ndarray  # (n, k) int32, most likely first
    guess_probs: np.ndarray  # (n, k) float32
    pieces: list[str]  # each id's text
    family: str
    description: str = ""

    @property
    def units(self) -> int:
        return int(self.activations.shape[1])

    def unit(self, column: int) -> tuple[int, str, int]:
        """(layer, kind, index) of a column."""
        for g in self.groups:
            if g.start <= column < g.start + g.width:
                return g.layer, g.kind, column - g.start
        raise IndexError(column)

    def column(self, layer: int, kind: str, index: int) -> int:
        """The column of unit ``layer:kind:index``; ConfigError naming what does not exist."""
        return unit_column(self.groups, self.family, layer, kind, index)


# --------------------------------------------------------------------------- recording
def _one_layer(rnn: nn.RNNBase, k: int) -> nn.RNNBase:
    """A one-layer copy of layer ``k`` of ``rnn`` (same weights, batch first)."""
    cls = nn.LSTM if isinstance(rnn, nn.LSTM) else nn.GRU
    layer = cls(
        getattr(rnn, f"weight_ih_l{k}").shape[1],
        rnn.hidden_size,
        num_layers=1,
        batch_first=True,
        bias=rnn.bias,
    )
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if rnn.bias else [])
    with torch.no_grad():
        for name in names:
            getattr(layer, f"{name}_l0").copy_(getattr(rnn, f"{name}_l{k}"))
    return layer.to(rnn.get_parameter("weight_hh_l0").device).eval()


def _cell_states(
    layer: nn.LSTM, x: torch.Tensor, h_all: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor
) -> np.ndarray:
    """c at every position (T, H) from inputs x (T, in), outputs h (T, H) and the state before."""
    hidden = layer.hidden_size
    h_prev = torch.cat((h0[None], h_all[:-1]), dim=0)
    weight = layer.get_parameter  # torch registers the weights under computed names
    gates = x @ weight("weight_ih_l0").t() + h_prev @ weight("weight_hh_l0").t()
    if layer.bias:
        gates += weight("bias_ih_l0") + weight("bias_hh_l0")
    i, f, g = gates[:, :hidden], gates[:, hidden : 2 * hidden], gates[:, 2 * hidden : 3 * hidden]
    forget = torch.sigmoid(f).float().numpy()
    write = (torch.sigmoid(i) * torch.tanh(g)).float().numpy()
    out = np.empty_like(write)
    c = c0.float().numpy().copy()
    for t in range(len(out)):  # elementwise: a few microseconds a step
        np.multiply(forget[t], c, out=c)
        c += write[t]
        out[t] = c
    return out


def _record_rnn(model: RNNLanguageModel, seq: torch.Tensor, out: np.ndarray) -> torch.Tensor:
    """Fill ``out`` (n, units) for an LSTM / GRU; return the logits (n, V)."""
    lstm = model.is_lstm
    hidden = model.config.hidden_size
    layers = [_one_layer(model.rnn, k) for k in range(model.config.num_layers)]
    dtype = model.rnn.get_parameter("weight_hh_l0").dtype
    zeros = torch.zeros(1, 1, hidden, dtype=dtype, device=seq.device)
    states: list[tuple[torch.Tensor, ...]] = [(zeros, zeros) if lstm else (zeros,) for _ in layers]
    per_layer = 2 * hidden if lstm else hidden
    logits = []
    row = 0  # rows of ``out`` filled so far; position 0 of seq is the start token
    for begin in range(0, len(seq) - 1, CHUNK):
        ids = seq[begin : begin + CHUNK + 1] if begin == 0 else seq[begin + 1 : begin + CHUNK + 1]
        x = model.embed_ids(ids[None])
        skip = 1 if begin == 0 else 0
        rows = len(ids) - skip
        for k, layer in enumerate(layers):
            column = k * per_layer
            if isinstance(layer, nn.LSTM):  # as ``lstm`` (_one_layer keeps the class)
                h0, c0 = states[k]
                y, (h1, c1) = layer(x, (h0, c0))
                cells = _cell_states(layer, x[0], y[0], h0[0, 0], c0[0, 0])
                out[row : row + rows, column : column + hidden] = cells[skip:]
                out[row : row + rows, column + hidden : column + 2 * hidden] = (
                    y[0, skip:].float().numpy()
                )
                states[k] = (h1, c1)
            else:
                y, h1 = layer(x, states[k][0])
                out[row : row + rows, column : column + hidden] = y[0, skip:].float().numpy()
                states[k] = (h1,)
            x = y
        logits.append(model.output(x[0, skip:]))
        row += rows
    return torch.cat(logits) if logits else torch.zeros(0, model.config.vocab_size)


def _record_transformer(
    model: TransformerLanguageModel, seq: torch.Tensor, out: np.ndarray
) -> torch.Tensor:
    """Fill ``out`` (n, units) with each block's MLP hidden units (GELU outputs); return logits."""
    width = 4 * model.config.hidden_size
    captured: list[list[torch.Tensor]] = [[] for _ in model.blocks]
    hooks = [
        block.fc.register_forward_hook(
            lambda _module, _inputs, output, k=k: captured[k].append(output.detach())
        )
        for k, block in enumerate(model.typed_blocks())
    ]
    logits = []
    state = None
    row = 0
    chunk = max(model.context, 1024)
    try:
        for begin in range(0, len(seq), chunk):
            ids = seq[begin : begin + chunk]
            for parts in captured:
                parts.clear()
            y, state = model(ids[None], state)
            t = len(ids)
            skip = 1 if begin == 0 else 0
            for k, parts in enumerate(captured):
                if sum(p.shape[1] for p in parts) == t:  # one pass over the chunk
                    acts = torch.cat([p[0] for p in parts])
                else:  # learned positions past the context: one pass per token
                    assert len(parts) == t, "unexpected Transformer call pattern"
                    acts = torch.cat([p[0, -1:] for p in parts])
                block = F.gelu(acts[skip:]).float().numpy()
                out[row : row + t - skip, k * width : (k + 1) * width] = block
            logits.append(y[0, skip:])
            row += t - skip
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(logits)


def describe(model: LanguageModel) -> str:
    """``LSTM 2 x 256``-style summary of the model's shape."""
    config = model.config
    name = {"lstm": "LSTM", "gru": "GRU", "transformer": "Transformer"}[config.family]
    if config.family == "transformer":
        return f"{name}, {config.num_layers} block(s) of width {config.hidden_size}"
    return f"{name} {config.num_layers} x {config.hidden_size}"


def encode_text(tokenizer: Tokenizer, text: str, unknown: str) -> tuple[str, np.ndarray]:
    """(the text as read, its ids): symbols the vocabulary lacks follow ``unknown`` (``score``'s
    policy); dropped ones leave the text, ``<unk>`` ones stay as written."""
    if tokenizer.unit != "character":
        raise ConfigError(
            f"chargen neurons reads character-level runs; this run's tokenizer is "
            f"{tokenizer.kind!r} (one column per character is what the page shows)"
        )
    ids = tokenizer.encode(text, unknown=unknown)
    if len(ids) != len(text):
        known = tokenizer.stoi
        text = "".join(ch for ch in text if ch in known)
    if not len(ids):
        raise ConfigError("the text has no character the model knows")
    return text, ids


@torch.inference_mode()
def record(
    model: LanguageModel, tokenizer: Tokenizer, text: str, unknown: str = "warn"
) -> Recording:
    """Every unit's activation after each character of ``text`` and the top guesses there."""
    model.eval()
    text, ids = encode_text(tokenizer, text, unknown)
    groups = unit_groups(model)
    units = sum(g.width for g in groups)
    need = len(ids) * units * 4
    free = available_memory()
    if free is not None and need > free // 2:
        raise ConfigError(
            f"recording {units:,} units over {len(ids):,} characters needs {need / 1e9:.1f} GB "
            f"(float32), more than half the {free / 1e9:.1f} GB available; pass a shorter text"
        )
    device = model.head.weight.device
    seq = torch.tensor([start_token(tokenizer), *ids.tolist()], dtype=torch.long, device=device)
    out = np.zeros((len(ids), units), dtype=np.float32)
    if isinstance(model, RNNLanguageModel):
        logits = _record_rnn(model, seq, out)
    elif isinstance(model, TransformerLanguageModel):
        logits = _record_transformer(model, seq, out)
    else:  # pragma: no cover - every family is one of the two
        raise ConfigError(f"chargen neurons does not know the {model.config.family} family")
    k = min(TOP_GUESSES, model.config.vocab_size)
    probs = torch.softmax(logits.float(), dim=-1)
    top = torch.topk(probs, k, dim=-1)
    return Recording(
        text=text,
        activations=out,
        groups=groups,
        guess_ids=top.indices.to(torch.int32).cpu().numpy(),
        guess_probs=top.values.cpu().numpy().astype(np.float32),
        pieces=tokenizer.token_texts(range(tokenizer.vocab_size)),
        family=model.config.family,
        description=describe(model),
    )


# --------------------------------------------------------------------------- correlations
def _centred(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float32 columns minus their float64 means, float64 norms; 0 for a constant column)."""
    x = np.asarray(columns, dtype=np.float32)
    if not len(x):
        return x.copy(), np.zeros(x.shape[1])
    constant = x.max(axis=0) == x.min(axis=0)
    x = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    norms = np.sqrt(np.square(x).sum(axis=0, dtype=np.float64))
    norms[constant] = 0.0
    return x, norms


def correlations(features: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """Pearson r (F, U) of every feature column (n, F) with every unit column (n, U).

    r = (f - mean f) . (a - mean a) / (|f - mean f| |a - mean a|); 0 where a column is constant.
    Columns are centred in float32 (means and norms summed in float64), then one product.
    """
    if features.shape[0] != activations.shape[0]:
        raise ValueError("features and activations must have the same rows")
    f, f_norm = _centred(features)
    f = (f / np.where(f_norm > 0, f_norm, np.inf)).astype(np.float32)
    out = np.zeros((features.shape[1], activations.shape[1]), dtype=np.float64)
    for start in range(0, activations.shape[1], UNIT_BLOCK):
        a, a_norm = _centred(activations[:, start : start + UNIT_BLOCK])
        out[:, start : start + UNIT_BLOCK] = (f.T @ a) / np.where(a_norm > 0, a_norm, np.inf)
    return np.clip(out, -1.0, 1.0)


def feature_matrix(features: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """(names, (n, F) float32 matrix) of a feature dictionary."""
    names = list(features)
    n = len(next(iter(features.values()))) if features else 0
    matrix = np.empty((n, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        matrix[:, j] = features[name]
    return names, matrix


def constant_features(matrix: np.ndarray) -> np.ndarray:
    """Bool (F,): the feature takes one value over the whole text (its r is meaningless)."""
    if not len(matrix):
        return np.ones(matrix.shape[1], dtype=bool)
    return matrix.max(axis=0) == matrix.min(axis=0)


def rank_units(
    r: np.ndarray, names: Sequence[str], recording: Recording, top: int, skip: np.ndarray
) -> list[dict[str, object]]:
    """For each feature not in ``skip``, its ``top`` units by |r|, largest first."""
    out: list[dict[str, object]] = []
    for j, name in enumerate(names):
        if skip[j]:
            continue
        row = r[j]
        order = np.argsort(-np.abs(row), kind="stable")[:top]
        for column in order.tolist():
            layer, kind, unit = recording.unit(column)
            out.append(
                {
                    "feature": name,
                    "layer": layer,
                    "kind": kind,
                    "unit": unit,
                    "r": round(float(row[column]), 6),
                }
            )
    return out


def parse_units(specs: Sequence[str], groups: Sequence[Group], family: str) -> list[int]:
    """``L:KIND:U`` specs (comma-separated, repeatable) -> recording columns, in order."""
    columns: list[int] = []
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            parts = item.split(":")
            if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
                raise ConfigError(
                    f"--units {item!r}: write LAYER:KIND:UNIT, e.g. 0:cell:12 (kinds: cell, "
                    "hidden, mlp; layers and units count from 0)"
                )
            column = unit_column(groups, family, int(parts[0]), parts[1], int(parts[2]))
            if column not in columns:
                columns.append(column)
    return columns


def choose_units(
    r: np.ndarray,
    ranking: list[dict[str, object]],
    recording: Recording,
    requested: Sequence[int],
    budget_bytes: int,
) -> tuple[list[int], str]:
    """The columns a page can hold at one byte per character each, and why those.

    All of them when they fit ``budget_bytes``; else the ranked ones, the requested ones, and
    then the others most correlated with any feature until the budget is spent.
    """
    n = max(len(recording.text), 1)
    total = recording.units
    room = max(budget_bytes // n, 1)
    if total <= room:
        return list(range(total)), f"all {total:,} units"
    chosen: dict[int, None] = {}
    for item in ranking:
        chosen[recording.column(item["layer"], item["kind"], item["unit"])] = None  # type: ignore[arg-type]
    ranked = len(chosen)
    for column in requested:
        chosen[column] = None
    asked = len(chosen) - ranked
    best = np.abs(r).max(axis=0) if len(r) else np.zeros(total)
    for column in np.argsort(-best, kind="stable").tolist():
        if len(chosen) >= room:
            break
        chosen.setdefault(column, None)
    others = len(chosen) - ranked - asked
    parts = [f"the top units of each feature ({ranked})"]
    if requested:
        parts.append(f"those asked for with --units ({asked} more)")
    if others:
        parts.append(f"the {others} others most correlated with a feature")
    reason = (
        f"{len(chosen):,} of {total:,} units ({', '.join(parts)}): all of them at "
        f"{n:,} characters would take {total * n / 1e6:,.0f} MB, over the page's budget of "
        f"{budget_bytes / 1e6:,.0f} MB; add others with --units LAYER:KIND:UNIT,..."
    )
    return sorted(chosen), reason


def quantise(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 (n, U), offsets and scales (U,) with value ~= offset + q * scale, |q| <= 127.

    The 255 levels span each unit's own range (a cell that sits near 3,600 keeps its detail).
    """
    if not len(columns):
        zeros = np.zeros(columns.shape[1], dtype=np.float32)
        return np.zeros(columns.shape, dtype=np.int8), zeros, zeros + 1
    high = columns.max(axis=0).astype(np.float64)
    low = columns.min(axis=0).astype(np.float64)
    offset = (high + low) / 2
    scale = np.where(high > low, (high - low) / 254.0, 1.0)
    q = np.rint((columns - offset) / scale).clip(-127, 127).astype(np.int8)
    return q, offset.astype(np.float32), scale.astype(np.float32)


def colour_scales(columns: np.ndarray, share: float = 99.5) -> dict[str, np.ndarray]:
    """Per unit: the median, and the half-widths of a colour scale centred on 0 (``zero``) and
    on the median (``spread``): the ``share`` percentile of |value| and of |value - median|;
    ``centred`` says whether the unit sits on one side of zero (1st and 99th percentiles of
    one sign), where centring on its median shows more than centring on 0."""
    x = np.ascontiguousarray(np.asarray(columns, dtype=np.float32).T)  # a row per unit: fast
    low, median, high = np.percentile(x, [1.0, 50.0, 99.0], axis=1)

    def half(values: np.ndarray) -> np.ndarray:
        wide = np.percentile(values, share, axis=1)
        peak = values.max(axis=1)
        return np.where(wide > 0, wide, np.where(peak > 0, peak, 1.0))

    return {
        "median": median,
        "zero": half(np.abs(x)),
        "spread": half(np.abs(x - median[:, None])),
        "centred": (low > 0) | (high < 0),
    }
