"""The memory budget's holders."""

from __future__ import annotations

from shadow_addon.budget import MemoryBudget, Tee


def test_a_tee_holds_what_it_keeps_in_the_budget_and_gives_it_back() -> None:
    budget = MemoryBudget(limit=100)
    t = Tee(limit=80, budget=budget)
    assert t(b"a" * 30) == b"a" * 30 and budget.held == 30  # passed through, and held
    assert t.take() == b"a" * 30 and budget.held == 0  # taken: the taker's holder counts it now
    over = Tee(limit=50, budget=budget)
    over(b"x" * 40)
    assert over(b"y" * 20) == b"y" * 20 and over.over and budget.held == 0  # past its limit: freed at once
    assert over.take() is None
    budget.take(90)
    refused = Tee(limit=80, budget=budget)
    refused(b"z" * 5)
    assert refused(b"z" * 10) == b"z" * 10 and refused.refused and budget.held == 90  # past the budget: freed
    assert refused.take() is None
    dropped = Tee(limit=80, budget=budget)
    dropped(b"q" * 10)
    dropped.release()
    dropped.release()  # twice is once
    assert budget.held == 90
