"""The early-stop rule: new bests, the memorising notice once, patience in evaluations and in budget."""

from __future__ import annotations

import pytest

from chargen.early_stop import EarlyStop


def _feed(rule: EarlyStop, losses: list[float], fractions: list[float] | None = None) -> list:
    fractions = fractions or [i / len(losses) for i in range(len(losses))]
    return [
        rule.update(loss, 10 * i, 0.5 * i, f)
        for i, (loss, f) in enumerate(zip(losses, fractions, strict=True))
    ]


def test_a_falling_loss_never_stops_or_warns() -> None:
    rule = EarlyStop(patience=1, patience_share=0.1)
    verdicts = _feed(rule, [3.0, 2.5, 2.2, 2.1, 2.05, 2.0])
    assert all(v.new_best and v.stop is None and v.notice is None for v in verdicts)
    assert rule.summary() == "best 2.0000 nats/char at step 50, 2.5 s"


def test_patience_counts_evaluations_without_a_new_best() -> None:
    rule = EarlyStop(patience=3)
    verdicts = _feed(rule, [2.0, 1.5, 1.6, 1.55, 1.5])  # 1.5 again is not a new best
    assert [v.stop is not None for v in verdicts] == [False, False, False, False, True]
    assert "3 evaluations without a new best (--patience 3)" in verdicts[-1].stop


def test_patience_share_is_measured_in_budget_since_the_best() -> None:
    rule = EarlyStop(patience_share=0.25)
    verdicts = _feed(rule, [2.0, 1.5, 1.6, 1.6, 1.6], [0.0, 0.1, 0.2, 0.3, 0.4])
    assert [v.stop is not None for v in verdicts] == [False, False, False, False, True]
    assert "25% of the budget" in verdicts[-1].stop


def test_the_memorising_notice_comes_once_at_five_percent() -> None:
    rule = EarlyStop()
    verdicts = _feed(rule, [2.0, 2.09, 2.11, 2.5, 3.0])
    notices = [v.notice for v in verdicts]
    assert notices[:2] == [None, None]  # 4.5 % above: not yet
    assert notices[2] is not None and notices[3:] == [None, None]
    assert "memorising the training text" in notices[2]
    assert "2.0000 nats/char at step 0" in notices[2] and "\n" not in notices[2]
    assert all(v.stop is None for v in verdicts)  # no patience set: a notice, never a stop


def test_state_round_trips_so_a_resume_keeps_counting() -> None:
    rule = EarlyStop(patience=2)
    _feed(rule, [2.0, 2.5])
    again = EarlyStop(patience=2)
    again.load(rule.state())
    assert again.state() == rule.state() and again.since_best == 1
    assert again.update(2.6, 30, 1.5, 0.5).stop is not None
    old = EarlyStop()
    old.load({})  # a trainer state saved before the rule existed
    assert old.best is None


@pytest.mark.parametrize("loss", [2.0, 1.0])
def test_summary_names_the_best(loss: float) -> None:
    rule = EarlyStop()
    rule.update(loss, 60, 1.1, 0.2)
    assert rule.summary() == f"best {loss:.4f} nats/char at step 60, 1.1 s"
