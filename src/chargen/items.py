"""Items out of a ``--lines`` run: each drawn from the boundary, ended by the next boundary.

An item is what training saw as one example: the model starts from a fresh state reading the
boundary token, ``prompt`` is the item's first characters, and the item ends where the model
draws the boundary again (or after ``length`` tokens). Item ``i`` uses seed ``seed + i``, so
any item can be drawn again alone.

``draw_new`` keeps drawing until it has ``want`` items that are neither training nor
validation items, and gives up, saying so, after ``max_draws`` draws. ``draw_items`` is what
``chargen generate`` asks of a ``--lines`` run: either of the two, its items labelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from chargen.errors import GenerationError
from chargen.generate import Sample, generate
from chargen.lines import BOUNDARY
from chargen.models import LanguageModel
from chargen.novelty import ItemIndex
from chargen.sampling import SamplingConfig
from chargen.tokenizer import Tokenizer

DRAW_BATCH = 256  # items drawn together by draw_new (one batched generation)
MAX_DRAWS_PER_ITEM = 20  # draw_new's default cap: 20 draws per item asked for


@dataclass
class Item:
    """One generated item: its text (prompt included) and the sample it came from."""

    text: str
    sample: Sample
    label: str | None = None  # train | val | new, when a novelty index was given

    def to_dict(self, temperature: float) -> dict[str, Any]:
        """The item's JSON record: ``text``, ``seed``, ``temperature``, ``logprob`` (the sum
        over its tokens, nats), ``tokens`` (how many) and ``novelty`` when labelled."""
        record: dict[str, Any] = {
            "text": self.text,
            "seed": self.sample.seed,
            "temperature": temperature,
            "logprob": sum(self.sample.logprobs),
            "tokens": len(self.sample.tokens),
        }
        if self.label is not None:
            record["novelty"] = self.label
        return record


def generate_items(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    *,
    count: int,
    length: int,
    sampling: SamplingConfig,
    seed: int,
    stop: Sequence[str] = (),
    unknown: str = "warn",
) -> list[Item]:
    """``count`` items starting with ``prompt``; item ``i`` with seed ``seed + i``."""
    if BOUNDARY in prompt:
        raise GenerationError(
            "--prompt is the start of one item and cannot hold a line break in a --lines run"
        )
    samples = generate(
        model,
        tokenizer,
        BOUNDARY + prompt,
        length=length,
        sampling=sampling,
        num_samples=count,
        seed=seed,
        stop=[BOUNDARY, *stop],
        unknown=unknown,
    )
    return [Item(prompt + s.text, s) for s in samples]


def draw_new(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    index: ItemIndex,
    *,
    want: int,
    length: int,
    sampling: SamplingConfig,
    seed: int,
    max_draws: int | None = None,
    unknown: str = "warn",
) -> tuple[list[Item], list[str]]:
    """``want`` new items (labelled ``new``) and the label of every item drawn on the way.

    Draws in batches of ``DRAW_BATCH`` with consecutive seeds; a new item that repeats an
    earlier new item counts once. Raises GenerationError after ``max_draws`` (default
    ``MAX_DRAWS_PER_ITEM * want``) draws without enough new items.
    """
    cap = max_draws if max_draws is not None else MAX_DRAWS_PER_ITEM * want
    found: list[Item] = []
    seen: set[str] = set()
    labels: list[str] = []
    drawn = 0
    while len(found) < want and drawn < cap:
        count = min(DRAW_BATCH, cap - drawn)
        batch = generate_items(
            model,
            tokenizer,
            prompt,
            count=count,
            length=length,
            sampling=sampling,
            seed=seed + drawn,
            unknown=unknown,
        )
        drawn += count
        for item in batch:
            label = index.label(item.text)
            labels.append(label)
            if label == "new" and item.text not in seen and len(found) < want:
                seen.add(item.text)
                found.append(replace(item, label=label))
    if len(found) < want:
        raise GenerationError(
            f"only {len(found)} new items in {drawn} draws (--only-new stops after "
            f"{cap} draws for {want} items); the model mostly repeats its training items: "
            "raise the temperature, or use best.safetensors from earlier in training"
        )
    return found, labels


def draw_items(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str,
    index: ItemIndex | None,
    *,
    count: int,
    length: int,
    sampling: SamplingConfig,
    seed: int,
    stop: Sequence[str] = (),
    only_new: bool = False,
    unknown: str = "warn",
) -> tuple[list[Item], list[str]]:
    """``count`` items and the novelty labels of every item drawn (empty without ``index``).

    With ``only_new`` (which needs ``index``): ``draw_new``'s new items, its labels counting
    every draw; else ``generate_items``' items, each labelled by ``index`` when given.
    """
    if only_new:
        if index is None:
            raise ValueError("only_new needs the run's item index")
        return draw_new(
            model,
            tokenizer,
            prompt,
            index,
            want=count,
            length=length,
            sampling=sampling,
            seed=seed,
            unknown=unknown,
        )
    found = generate_items(
        model,
        tokenizer,
        prompt,
        count=count,
        length=length,
        sampling=sampling,
        seed=seed,
        stop=stop,
        unknown=unknown,
    )
    if index is None:
        return found, []
    labelled = [replace(item, label=index.label(item.text)) for item in found]
    return labelled, [item.label for item in labelled if item.label is not None]
