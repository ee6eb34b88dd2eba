"""The sample blocks training prints: from a fixed window of the training text (or, in a
``--lines`` run, whole items from a fresh state) at each configured temperature, on a clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from chargen.config import TrainConfig
from chargen.distributed import World
from chargen.generate import generate
from chargen.lines import BOUNDARY
from chargen.models import LanguageModel
from chargen.reporting import Reporter
from chargen.sampling import SamplingConfig
from chargen.tokenizer import Tokenizer

SEED_TEXT_CHARS = 60
LINE_SAMPLES = 8  # items drawn per temperature in a --lines run's sample block


def seed_text_start(seed: int, train_tokens: int) -> int:
    """Where the window of ``SEED_TEXT_CHARS`` tokens that training samples continue starts
    (also the playground's default prompt, ``seed_text.py``)."""
    return int(np.random.default_rng(seed).integers(0, max(1, train_tokens - SEED_TEXT_CHARS)))


class SampleMixin:
    """The ``Trainer``'s sample blocks; the attributes below are the trainer's (``trainer.py``)."""

    tc: TrainConfig
    world: World
    model: LanguageModel
    tokenizer: Tokenizer
    reporter: Reporter
    train_ids: np.ndarray
    seed_start: int
    lines: bool
    step: int
    epoch: int
    elapsed: float
    last_sample_elapsed: float | None
    _last_block: tuple[int, str, dict[float, str]] | None
    log: Callable[[dict[str, Any]], None]

    def sample_texts(self) -> tuple[str, dict[float, str]]:
        """From one fixed window of the training text, a sample at each configured temperature."""
        seed_ids = self.train_ids[self.seed_start : self.seed_start + SEED_TEXT_CHARS]
        seed_text = self.tokenizer.decode(np.asarray(seed_ids, dtype=np.int64))
        texts: dict[float, str] = {}
        if self.lines:  # whole items, each from a fresh state, one per line
            for temperature in self.tc.sample_temperatures:
                samples = generate(
                    self.model,
                    self.tokenizer,
                    BOUNDARY,
                    length=min(self.tc.sample_length, 200),
                    sampling=SamplingConfig(temperature=float(temperature)),
                    num_samples=LINE_SAMPLES,
                    seed=self.tc.seed,
                    stop=[BOUNDARY],
                )
                texts[float(temperature)] = BOUNDARY.join(s.text for s in samples)
            return "", texts
        for temperature in self.tc.sample_temperatures:
            (sample,) = generate(
                self.model,
                self.tokenizer,
                seed_text,
                length=self.tc.sample_length,
                sampling=SamplingConfig(temperature=float(temperature)),
                seed=self.tc.seed,
                unknown="drop",
            )
            texts[float(temperature)] = sample.text
        return seed_text, texts

    def samples_due(self) -> bool:
        """``sample_every`` seconds since the last block (0: at epoch ends only, as the book)."""
        if self.tc.sample_every == 0:
            return False
        last = self.last_sample_elapsed
        return last is None or self.elapsed - last >= self.tc.sample_every

    def record_samples(self, full: bool = False) -> None:
        """Draw, log and show a block of samples; shown whole when ``full`` (the last block) or
        when blocks follow epochs (``sample_every`` 0), else compact. A block already drawn at
        this step is shown again, not drawn again."""
        self.last_sample_elapsed = self.elapsed
        if not self.world.is_main or not self.tc.sample_temperatures or self.tc.sample_length == 0:
            return
        full = full or self.tc.sample_every == 0
        if self._last_block is not None and self._last_block[0] == self.step:
            if full:
                self.reporter.samples(self.epoch, self.step, *self._last_block[1:], full=True)
            return
        seed_text, texts = self.sample_texts()
        self._last_block = (self.step, seed_text, texts)
        for temperature, text in texts.items():
            self.log(
                {
                    "kind": "sample",
                    "step": self.step,
                    "epoch": self.epoch,
                    "temperature": temperature,
                    "seed_text": seed_text,
                    "text": text,
                }
            )
        self.reporter.samples(self.epoch, self.step, seed_text, texts, full=full)
