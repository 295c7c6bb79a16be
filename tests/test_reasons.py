"""Drop reasons are one vocabulary (`reasons.DropReason`): every reason the sender and the addon emit, found in their
source with `ast`, is a member; the dashboard has words for each, and README's metric table lists each."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from shadow_addon import figures, metrics
from shadow_addon.reasons import WORDS, DropReason

ROOT = Path(__file__).resolve().parent.parent
# Modules that record drops or emit a reason for one.
EMITTERS = (
    "sender.py",
    "h2sender.py",
    "h2session.py",
    "h2answer.py",
    "reader.py",
    "copies.py",
    "production.py",
    "shadow.py",
    "replay.py",
    "replaypolicy.py",
)
# Calls whose string arguments are reasons (messages have spaces, so only label-like words are taken).
REASON_CALLS = {"_fail", "_failed", "_attempt_failed", "_drop", "record_drop", "ReadError", "Outcome", "_skip_copy"}
LABEL = re.compile(r"[a-z]+(_[a-z]+)*")


def _labels(node: ast.AST) -> set[str]:
    """String constants in `node`, f-strings left out (messages, and their format specs)."""
    if isinstance(node, ast.JoinedStr):
        return set()
    if isinstance(node, ast.Constant):
        return {node.value} if isinstance(node.value, str) and LABEL.fullmatch(node.value) else set()
    return set().union(*(_labels(child) for child in ast.iter_child_nodes(node)))


def emitted(source: str) -> set[str]:
    """Label-like strings passed to a call that records or raises a drop, assigned to a name that holds reasons, or
    returned by a function that says why a request is not copied."""
    found: set[str] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in REASON_CALLS:
                for arg in node.args:
                    found |= _labels(arg)
            found |= {v for k in node.keywords if k.arg == "reason" for v in _labels(k.value)}
        elif isinstance(node, ast.AnnAssign | ast.Assign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", "") for t in targets]
            if any("reason" in n.lower() for n in names) and node.value is not None:
                found |= _labels(node.value)
        elif isinstance(node, ast.FunctionDef) and node.name in ("not_copied", "body_of", "skip_reason"):
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and ret.value is not None:
                    found |= _labels(ret.value)
    return found


def test_emitted_reasons_are_found() -> None:
    source = (
        "def f():\n"
        "    self._fail('timeout', f'none within {t:g}s')\n"
        "    metrics.record_drop(m, 'upgrade' if s == 403 else 'redirect')\n"
        "    Outcome(reason='loop', error='x y')\n"
        "CAP_REASONS = frozenset({'head_limit'})\n"
        "def not_copied(r):\n"
        "    return 'method'\n"
    )
    assert emitted(source) == {"timeout", "upgrade", "redirect", "loop", "head_limit", "method"}


def test_every_reason_emitted_is_a_drop_reason() -> None:
    seen: set[str] = set()
    for name in EMITTERS:
        found = emitted((ROOT / "shadow_addon" / name).read_text(encoding="utf-8"))
        assert not found - set(DropReason), f"{name} emits reasons that are not DropReason members"
        seen |= found
    # Every member is emitted somewhere (through a literal or the enum itself).
    enum_uses = set()
    for path in (ROOT / "shadow_addon").rglob("*.py"):
        enum_uses |= {m.value for m in DropReason if f"DropReason.{m.name}" in path.read_text(encoding="utf-8")}
    assert set(DropReason) - seen - enum_uses == set()


def test_a_reason_compares_and_counts_as_its_label() -> None:
    m = metrics.Metrics()
    m.record_drop("a", "timeout")  # as the sender records it
    m.record_drop("a", DropReason.TIMEOUT)
    m.record_drop("b", DropReason.RESET)
    assert m.dropped == {("a", "timeout"): 2, ("b", "reset"): 1}
    assert m.drops(DropReason.TIMEOUT) == {"a": 2}
    assert b'reason="timeout"' in metrics.render(m)


def test_the_dashboard_has_words_for_every_reason() -> None:
    assert set(WORDS) == set(DropReason)
    assert all(WORDS.values())
    assert figures.WORDS is WORDS  # the drops a resource shows are explained in these words


def test_readme_lists_every_reason() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `shadow_dropped_total` |"))
    listed = re.findall(r"`([a-z_]+)`", row.split("|")[3])
    assert listed and len(listed) == len(set(listed))
    assert set(listed) == set(DropReason)
