"""``python -m sagellm_comm.testing NAME [pytest args...]``: the conformance suite as a vendor's gate.

Exit status:

- 0: every test passed or was skipped for an undeclared feature, and at least one test of an op passed;
- 1: a test failed (pytest's own status; the failing rank's traceback is shown);
- 6: the backend cannot run here (unknown, unavailable, or its factory fails to import), with the reason;
- 7: nothing was verified: no op test passed (the backend declares no ops, or every op test was skipped);
- other pytest statuses (2 interrupted, 4 usage error, 5 nothing collected) as pytest returns them.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from typing import Any

EXIT_UNAVAILABLE = 6
"""Exit status when the backend cannot run here (unknown, unavailable, or its factory fails to import)."""
EXIT_NOTHING_VERIFIED = 7
"""Exit status when no test of an op passed: nothing about the backend was verified."""
# tests that pass without the backend doing anything: they prove nothing about its ops
NOT_OP_TESTS = frozenset({"test_world", "test_unknown_backend_name"})
"""Tests that pass without the backend doing anything; they do not count as a verified op."""


class _Outcomes:
    """Counts what happened to every test (a pytest plugin object)."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.skip_reasons: Counter[str] = Counter()

    def pytest_runtest_logreport(self, report: Any) -> None:
        base = report.nodeid.split("::")[-1].split("[")[0]
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            self.skip_reasons[reason.removeprefix("Skipped: ")] += 1
        elif report.failed:
            self.failed.append(report.nodeid)
        elif report.when == "call" and report.passed:
            self.passed.append(base)


def _probe(name: str) -> tuple[Any, str]:
    from sagellm_comm.errors import CommError
    from sagellm_comm.registry import get_comm_backend

    try:
        return get_comm_backend(name), ""
    except CommError as exc:
        return None, exc.message


def main(argv: list[str] | None = None) -> int:
    """Run the suite against the backend named by ``argv[0]`` (default ``sys.argv[1:]``), the rest going to
    pytest; returns the exit status described above."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print(
            "usage: python -m sagellm_comm.testing BACKEND [--comm-world-sizes 1,2,4] [pytest options]", file=sys.stderr
        )
        return 2
    name = args[0]
    probe, why = _probe(name)
    if probe is None:
        print(f"conformance of {name!r}: cannot run: {why}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    import pytest

    outcomes = _Outcomes()
    suite = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_installed_backend.py")
    # the probe above imported sagellm_comm before pytest could rewrite its asserts: nothing to warn about
    status = int(
        pytest.main(
            [
                suite,
                "--comm-backend",
                name,
                "-p",
                "no:cacheprovider",
                "-W",
                "ignore::pytest.PytestAssertRewriteWarning",
                *args[1:],
            ],
            plugins=[outcomes],
        )
    )
    op_passed = [t for t in outcomes.passed if t not in NOT_OP_TESTS]
    summary = (
        f"conformance of {name!r}: {len(op_passed)} op test(s) passed, {len(outcomes.failed)} failed, "
        f"{sum(outcomes.skip_reasons.values())} skipped"
    )
    if status != 0:
        print(f"{summary}: FAILED (pytest status {status})", file=sys.stderr)
        return status
    if not op_passed:
        if not probe.capabilities.ops:
            why = f"{name} declares no ops: nothing is supported yet, so nothing could be verified"
        else:
            top = "; ".join(f"{reason} ({count}x)" for reason, count in outcomes.skip_reasons.most_common(3))
            why = f"every op test was skipped ({top or 'none collected'})"
        print(f"{summary}: NOT VERIFIED: {why}", file=sys.stderr)
        return EXIT_NOTHING_VERIFIED
    print(f"{summary}: PASSED", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
