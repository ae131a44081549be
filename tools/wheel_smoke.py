"""Run by tools/check-wheels inside a fresh environment where only ``pip install isagellm-comm`` happened; then, with
``--accelerators TORCH_VERSION``, after ``pip install 'isagellm-comm[nccl,rccl,hccl]'`` in the same environment.

Each check prints one line; the exit status is the number of failed checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib.metadata import distributions
from pathlib import Path

import torch


def listing_imports_no_engine() -> str:
    code = (
        "import json, sys\nfrom sagellm_comm import list_comm_backends\n"
        "rows = [(s.name, s.available) for s in list_comm_backends()]\n"
        "print(json.dumps({'rows': rows, 'modules': sorted(sys.modules)}))"
    )
    out = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    )
    engines = [
        m
        for m in out["modules"]
        if m.startswith("sagellm_comm_")
        and m.rsplit(".", 1)[-1] in {"backend", "kinds", "engine", "p2p", "sync", "progress"}
    ]
    assert not engines, f"listing imported {engines}"
    available = sorted(name for name, ok in out["rows"] if ok)
    assert {"gloo", "shm"} <= set(available), out["rows"]
    return f"available: {', '.join(available)}; no engine module imported by the listing"


def distributions_installed() -> str:
    ours = sorted(d.metadata["Name"] for d in distributions() if d.metadata["Name"].startswith("isagellm-comm"))
    assert ours == ["isagellm-comm", "isagellm-comm-core", "isagellm-comm-cxl-ub", "isagellm-comm-gloo"], ours
    return ", ".join(ours)


def rank_all_reduce(name: str | None) -> tuple[str, list[float]]:
    from sagellm_comm import get_comm_backend

    comm = get_comm_backend(name)
    comm.init_process_group()
    t = torch.full((1000,), float(comm.get_rank() + 1))
    comm.all_reduce(t, op="sum")
    out = comm.name, sorted(set(t.tolist()))
    comm.destroy()
    return out


def auto_and_gloo_all_reduce_on_two_ranks() -> str:
    from sagellm_comm.launch import launch

    lines = []
    for name in (None, "gloo"):
        results = launch(rank_all_reduce, 2, name, timeout=120)
        assert all(values == [3.0] for _, values in results), results
        lines.append(f"{name or 'auto'} -> {results[0][0]}: 1+2 = 3 on both ranks")
    assert lines[0].startswith("auto -> shm"), lines
    return "; ".join(lines)


def seed_spellings_and_benchmark_without_plot() -> str:
    from sagellm_comm import get_comm_backend
    from sagellm_comm.benchmark import run_all_reduce_benchmark, run_overlap_benchmark

    try:
        import matplotlib  # noqa: F401

        raise AssertionError("matplotlib is installed: the plot extra leaked into the base install")
    except ImportError:
        pass
    backend = get_comm_backend("gloo")
    backend.init(rank=0, world_size=1, master_addr="localhost", master_port=29500)
    with tempfile.TemporaryDirectory() as out:
        results = run_all_reduce_benchmark(
            backend=backend, message_sizes=[1024, 4096], output_dir=out, warmup_iters=1, benchmark_iters=3
        )
    backend.destroy()
    with tempfile.TemporaryDirectory() as out:  # the seed's overlap call: 2 local ranks, JSON + CSV
        overlap = run_overlap_benchmark(
            comm_bytes=[1024, 4096], compute_durations_ms=[5], output_dir=out, warmup_iters=1, benchmark_iters=2
        )
        files = sorted(p.suffix for p in Path(out).iterdir())
    assert files == [".csv", ".json"] and all(hasattr(r, "overlap_efficiency") for r in overlap), files
    return (
        f"run_all_reduce_benchmark gave {len(results)} records without matplotlib; run_overlap_benchmark {len(overlap)}"
    )


def cuda_work_gets_a_clear_error() -> str:
    from sagellm_comm import BackendNotSupportedError, get_comm_backend

    try:
        get_comm_backend("auto", device="cuda")
    except BackendNotSupportedError as exc:
        assert "cuda" in exc.message, exc.message
        assert "pip install 'isagellm-comm[nccl]'" in exc.message, "the hint names the extra that serves cuda"
        return exc.message[:160] + "..."
    raise AssertionError("auto for cuda tensors did not raise")


CHECKS = [
    distributions_installed,
    listing_imports_no_engine,
    auto_and_gloo_all_reduce_on_two_ranks,
    seed_spellings_and_benchmark_without_plot,
    cuda_work_gets_a_clear_error,
]


# ------------------------------------------------------------------ after pip install 'isagellm-comm[nccl,rccl,hccl]'
TORCH_BEFORE: list[str] = []


def extras_kept_the_torch() -> str:
    assert torch.__version__ == TORCH_BEFORE[0], f"torch {TORCH_BEFORE[0]} became {torch.__version__}"
    names = sorted(d.metadata["Name"] for d in distributions() if d.metadata["Name"].startswith("isagellm-comm-"))
    assert {"isagellm-comm-nccl", "isagellm-comm-rccl", "isagellm-comm-hccl"} <= set(names), names
    return f"torch still {torch.__version__}; installed {', '.join(names)}"


def accelerator_backends_say_why() -> str:
    from sagellm_comm import BackendNotSupportedError, get_comm_backend, list_comm_backends

    status = {s.name: s for s in list_comm_backends()}
    lines = []
    for name in ("nccl", "rccl", "hccl"):
        assert name in status, f"{name} is not registered: {sorted(status)}"
        if status[name].available:
            lines.append(f"{name}: available ({status[name].reason})")
            continue
        try:
            get_comm_backend(name)
        except BackendNotSupportedError as exc:
            assert status[name].reason in exc.message, exc.message
        else:
            raise AssertionError(f"{name} is unavailable but was created")
        lines.append(f"{name}: refused ({status[name].reason[:60]}...)")
    return "; ".join(lines)


def nccl_binding_finds_the_library() -> str:
    if not torch.version.cuda:
        return "skipped: not a CUDA build of torch"
    from sagellm_comm_nccl.binding import find_library

    lib = find_library()
    assert lib.version == tuple(torch.cuda.nccl.version()), (lib, torch.cuda.nccl.version())
    return repr(lib)


ACCELERATOR_CHECKS = [extras_kept_the_torch, accelerator_backends_say_why, nccl_binding_finds_the_library]


def main() -> int:
    checks = CHECKS
    if sys.argv[1:2] == ["--accelerators"]:
        TORCH_BEFORE.append(sys.argv[2])
        checks = ACCELERATOR_CHECKS
    failed = 0
    for check in checks:
        try:
            print(f"PASS {check.__name__}: {check()}", flush=True)
        except Exception as exc:
            failed += 1
            print(f"FAIL {check.__name__}: {type(exc).__name__}: {exc}", flush=True)
    print(f"wheel smoke: {len(checks) - failed}/{len(checks)} checks passed")
    return failed


if __name__ == "__main__":
    sys.exit(main())
