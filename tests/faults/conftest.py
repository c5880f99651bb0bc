"""The fault-injection suite: each test adds what it tried to one table, printed at the end."""

from collections import defaultdict

import pytest

TALLY: dict[str, dict[str, int]] = defaultdict(lambda: {"tried": 0, "survived": 0})


@pytest.fixture
def tally():
    def record(kind: str, tried: int, survived: int) -> None:
        TALLY[kind]["tried"] += tried
        TALLY[kind]["survived"] += survived

    return record


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    tr = terminalreporter
    tr.section("fault injection: nothing lost")
    tr.write_line(f"{'fault':42s} {'tried':>7s} {'handled':>8s}")
    for kind, counts in sorted(TALLY.items()):
        tr.write_line(f"{kind:42s} {counts['tried']:7d} {counts['survived']:8d}")
