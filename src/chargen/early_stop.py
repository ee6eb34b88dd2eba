"""When a run has stopped learning: the best validation loss, patience, and the memorising notice.

After each evaluation ``EarlyStop.update`` says whether the loss is a new best, whether the
user should now be told that the model is memorising its training text (once per run: the
loss rose ``RISE`` (5 %) above its best), and whether to stop:

* ``patience`` — after that many evaluations in a row without a new best;
* ``patience_share`` — once no new best has come for that share of the budget (a share of the
  steps, or of the minutes with ``--minutes``), the rule ``--preset auto`` uses so that "stop
  early" means the same on a 10-second and a 10-minute run.

A "new best" is any loss below the best so far. The state is a few numbers saved with the
trainer state, so a resumed run keeps counting where it stopped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

RISE = 0.05
_SAVED = ("best", "best_step", "best_elapsed", "best_fraction", "since_best", "noticed")


@dataclass
class Verdict:
    """What one evaluation means for the run."""

    new_best: bool
    notice: str | None = None  # the memorising notice, on the evaluation that first rises 5 %
    stop: str | None = None  # why the run stops here, or None to go on


@dataclass
class EarlyStop:
    """The best evaluation so far and the patience rules (see the module notes)."""

    patience: int | None = None
    patience_share: float | None = None
    best: float | None = None
    best_step: int = 0
    best_elapsed: float = 0.0
    best_fraction: float = 0.0
    since_best: int = 0  # evaluations since the best one
    noticed: bool = False

    def update(self, loss: float, step: int, elapsed: float, fraction: float) -> Verdict:
        """Take the evaluation ``loss`` at ``step`` (``elapsed`` s, ``fraction`` of the budget)."""
        if self.best is None or loss < self.best:
            self.best, self.best_step, self.best_elapsed = loss, step, elapsed
            self.best_fraction = fraction
            self.since_best = 0
            return Verdict(new_best=True)
        self.since_best += 1
        verdict = Verdict(new_best=False)
        if not self.noticed and loss > self.best * (1.0 + RISE):
            self.noticed = True
            verdict.notice = (
                f"validation loss {loss:.4f} is {100 * (loss / self.best - 1):.0f}% above its best "
                f"({self.best:.4f} nats/char at step {self.best_step}, {self.best_elapsed:.1f} s): "
                "the model is memorising the training text; best.safetensors keeps the best "
                "weights (--patience N stops a run after N evaluations without a new best)"
            )
        if self.patience is not None and self.since_best >= self.patience:
            verdict.stop = (
                f"stopped early: {self.since_best} evaluations without a new best "
                f"(--patience {self.patience})"
            )
        elif (
            self.patience_share is not None and fraction - self.best_fraction >= self.patience_share
        ):
            verdict.stop = (
                f"stopped early: no new best for {100 * self.patience_share:.0f}% of the budget"
            )
        return verdict

    def summary(self) -> str:
        """``best 2.148 nats/char at step 60, 1.1 s`` (empty before any evaluation)."""
        if self.best is None:
            return ""
        return f"best {self.best:.4f} nats/char at step {self.best_step}, {self.best_elapsed:.1f} s"

    def state(self) -> dict[str, Any]:
        """What a resume needs, JSON-ready."""
        data = asdict(self)
        return {k: data[k] for k in _SAVED}

    def load(self, state: dict[str, Any]) -> None:
        """Restore ``state()`` (missing keys, from runs saved before this existed, keep defaults)."""
        for key in _SAVED:
            if key in state:
                setattr(self, key, state[key])
