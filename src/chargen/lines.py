"""One item per line (``--lines``): names, titles, words — each line its own example.

As in makemore, an item is read from a fresh state and framed by a boundary token: the model
sees ``<B> e m m a`` and must predict ``e m m a <B>``, so it learns how items start and when
they end. The boundary is the newline itself (an item never holds one), so the token stream of
a list is its text with every line stripped, blank lines dropped, and a newline before the
first item: ``"\\nemma\\nolivia\\n"``. Item ``k`` spans the ids between boundary ``k`` and
boundary ``k + 1``.

The validation items are a fixed random share of the lines (``SPLIT_SEED``), not the tail of
the file: a sorted list would otherwise hold out only names starting with "z". The split is a
function of the number of items alone, so a resumed run, ``eval`` and ``generate --novelty``
agree on it, and two runs on the same list compare on the same items.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from chargen.errors import TrainingError

BOUNDARY = "\n"
SPLIT_SEED = 0
IGNORE = -100  # target of a padding position: ``cross_entropy(ignore_index=IGNORE)``


def items_of(text: str) -> list[str]:
    """The non-empty lines of ``text``, stripped of surrounding white space."""
    return [stripped for line in text.split("\n") if (stripped := line.strip())]


def lines_text(items: list[str]) -> str:
    """The text a list is tokenised as: a boundary before, between and after the items."""
    return BOUNDARY + BOUNDARY.join(items) + BOUNDARY


def item_bounds(ids: np.ndarray, boundary_id: int) -> np.ndarray:
    """Positions of the boundary tokens in ``ids`` (item ``k`` lies between bounds ``k, k+1``)."""
    bounds = np.flatnonzero(np.asarray(ids) == boundary_id)
    if len(bounds) < 3 or bounds[0] != 0 or bounds[-1] != len(ids) - 1:
        raise TrainingError(
            "--lines needs at least two non-empty lines, each a line of its own "
            f"(found {max(0, len(bounds) - 1)} items)"
        )
    return bounds


def split_items(count: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) item indices, each sorted: a fixed random ``val_fraction`` held out."""
    if count < 2:
        raise TrainingError(f"--lines needs at least two items, found {count}")
    held = min(count - 1, max(1, round(count * val_fraction)))
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    return np.sort(order[held:]), np.sort(order[:held])


def item_texts(text_items: list[str], indices: np.ndarray) -> list[str]:
    return [text_items[i] for i in indices]


def padded_examples(
    ids: np.ndarray, bounds: np.ndarray, items: np.ndarray, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``<B> item`` and targets ``item <B>`` (N, L) int64 for ``items``, padded.

    Padding inputs are ``pad_id`` (the boundary); padding targets are ``IGNORE``.
    """
    starts = bounds[items]
    ends = bounds[items + 1]  # the closing boundary
    width = int((ends - starts).max())
    x = np.full((len(items), width), pad_id, dtype=np.int64)
    y = np.full((len(items), width), IGNORE, dtype=np.int64)
    for row, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        x[row, : end - start] = ids[start:end]
        y[row, : end - start] = ids[start + 1 : end + 1]
    return torch.from_numpy(x), torch.from_numpy(y)


class LineBatches:
    """Batches of whole items, shuffled each epoch; no state is carried between batches."""

    def __init__(
        self, ids: np.ndarray, bounds: np.ndarray, items: np.ndarray, batch_size: int, seed: int
    ) -> None:
        self.ids = ids
        self.bounds = bounds
        self.items = items
        self.seed = seed
        self.pad_id = int(ids[bounds[0]])
        self.batch_size = max(1, min(batch_size, len(items)))
        self.steps_per_epoch = math.ceil(len(items) / self.batch_size)
        self.mean_tokens = float((bounds[items + 1] - bounds[items]).mean())

    @property
    def tokens_per_step(self) -> int:
        """Targets in an average batch (each item's tokens and its end)."""
        return max(1, round(self.batch_size * self.mean_tokens))

    def batch(
        self, epoch: int, step: int, rows: slice | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets (B, L) for ``step`` of ``epoch`` (only ``rows`` if given)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.items)
        chosen = order[step * self.batch_size : (step + 1) * self.batch_size]
        chosen = chosen[rows or slice(None)]
        return padded_examples(self.ids, self.bounds, chosen, self.pad_id)
