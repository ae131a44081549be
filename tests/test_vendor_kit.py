"""The conformance suite as a vendor's gate, run the way a vendor runs it: an out-of-tree plugin package
(tests/vendor_kit/gloocopy, built only on the core's public API) is built into a wheel, installed into a private
directory, and ``python -m sagellm_comm.testing NAME`` is run against each of its backends.

- the correct copy of the Gloo backend passes (exit 0);
- all_reduce off by one element at one rank fails, and only the all_reduce tests fail;
- broadcast from the wrong root fails;
- a backend claiming ``concurrent_progress`` whose async op starts only in wait(), or runs inside the call, fails
  the causal progress check with a message saying which;
- an unknown backend exits 6 saying why.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from wheel_install import ROOT, build_wheel, env_with, install_into, run_python

pytestmark = pytest.mark.multirank

SOURCE = ROOT / "tests" / "vendor_kit" / "gloocopy"


@pytest.fixture(scope="module")
def vendor_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("vendor")
    wheel = build_wheel(SOURCE, tmp / "dist")
    install_into(tmp / "site", wheel)
    # a check expected to fail waits 3 s, not the default minute
    return env_with(tmp / "site", SAGELLM_COMM_CONFORMANCE_WAIT_S="3")


def gate(env: dict[str, str], backend: str, *pytest_args: str) -> tuple[int, str]:
    proc = run_python(
        ["-m", "sagellm_comm.testing", backend, "--comm-world-sizes", "2", "-q", "-p", "no:randomly", *pytest_args],
        env,
        timeout=600,
        cwd=ROOT,
    )
    return proc.returncode, proc.stdout + proc.stderr


def failed_tests(output: str) -> set[str]:
    return set(re.findall(r"^FAILED \S+::(test_\w+)", output, flags=re.M))


def test_a_correct_out_of_tree_copy_of_gloo_passes(vendor_env: dict[str, str]) -> None:
    status, out = gate(vendor_env, "gloocopy")
    assert status == 0, out[-4000:]
    assert re.search(r"conformance of 'gloocopy': \d+ op test\(s\) passed, 0 failed", out), out[-2000:]
    assert "PASSED" in out


def test_all_reduce_off_by_one_element_at_one_rank_fails(vendor_env: dict[str, str]) -> None:
    # one failing test per world size is enough: every failure costs a torn-down rank pool
    status, out = gate(vendor_env, "gloocopy-offbyone", "-k", "all_reduce and float32 and sum or broadcast and float32")
    assert status == 1, out[-4000:]
    assert failed_tests(out) == {"test_all_reduce"}, out[-4000:]  # broadcast, untouched, still passes
    assert "elements wrong" in out and "rank 1 failed" in out
    assert re.search(r"all_reduce sum float32 n=1021: 1 of 1021 elements wrong; first at \[510\]", out), out[-4000:]


def test_wrong_root_and_false_concurrency_claims_fail(vendor_env: dict[str, str]) -> None:
    """Three liars in one run of the suite (one interpreter start): broadcast from the wrong root, async ops that
    start only in wait(), and async ops that block in the call while claiming concurrent progress."""
    proc = run_python(
        [
            "-m",
            "pytest",
            "--pyargs",
            "sagellm_comm.testing.test_installed_backend",
            "-q",
            "-p",
            "no:cacheprovider",
            "--comm-world-sizes",
            "2",
            "--comm-backend",
            "gloocopy-wrongroot",
            "--comm-backend",
            "gloocopy-deferred",
            "--comm-backend",
            "gloocopy-blocking",
            "-k",
            "wrongroot and broadcast or not wrongroot and concurrent_progress",
        ],
        vendor_env,
        timeout=600,
        cwd=ROOT,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-4000:]
    failed = set(re.findall(r"^FAILED \S+::(test_\w+\[ws2-gloocopy-[\w-]+)\]", out, flags=re.M))
    assert failed == {
        "test_broadcast_async[ws2-gloocopy-wrongroot",
        "test_concurrent_progress[ws2-gloocopy-deferred",
        "test_concurrent_progress[ws2-gloocopy-blocking",
    } | {
        f"test_broadcast[ws2-gloocopy-wrongroot-{dt}" for dt in ("float32", "float16", "bfloat16", "int32", "int64")
    }, out[-4000:]
    assert "broadcast root=0" in out
    assert "did not progress on its own" in out and "instead of returning at once" in out, out[-4000:]


def test_an_unavailable_backend_exits_6_saying_why(vendor_env: dict[str, str]) -> None:
    status, out = gate(vendor_env, "no-such-backend")
    assert status == 6 and "cannot run" in out and "unknown comm backend" in out, out


def test_the_fixture_uses_the_public_api_only() -> None:
    text = "\n".join(p.read_text() for p in Path(SOURCE / "src").rglob("*.py"))
    private = re.findall(r"from sagellm_comm[\w.]*\._\w+|import sagellm_comm[\w.]*\._\w+", text)
    assert not private, private
