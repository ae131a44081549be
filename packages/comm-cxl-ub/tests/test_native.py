"""The native engine (csrc/, native.py): its reductions against torch for every dtype and reduce op, fp32
accumulation of 16-bit floats, how a group picks its engine path, and what ``sagellm-comm info`` says about it.
The collectives themselves run the shared conformance suite on both paths (test_cxl_ub_conformance.py)."""

from __future__ import annotations

import ctypes

import native_tasks
import pytest
import torch
from sagellm_protocol import ReduceOp
from sagellm_protocol.errors import ErrorCode

from sagellm_comm.launch import RankPool
from sagellm_comm.ops import WIRE_DTYPES
from sagellm_comm_cxl_ub import native, probes
from sagellm_comm_cxl_ub.config import MemoryConfig

needs_native = pytest.mark.skipif(not native.NATIVE_AVAILABLE, reason=f"no native engine: {native.NATIVE_REASON}")
OPS = tuple(ReduceOp)


def _reference(rows: list[torch.Tensor], op: ReduceOp) -> torch.Tensor:
    """Fold in rank order; 16-bit floats in fp32, rounded once (what the native kernels promise)."""
    dtype = rows[0].dtype
    wide = [r.float() for r in rows] if dtype in (torch.float16, torch.bfloat16) else list(rows)
    out = wide[0].clone()
    for r in wide[1:]:
        if dtype is torch.bool:
            out = (
                out | r
                if op in (ReduceOp.SUM, ReduceOp.MAX, ReduceOp.BOR)
                else out & r
                if op in (ReduceOp.PROD, ReduceOp.MIN, ReduceOp.BAND)
                else out ^ r
            )
        elif op in (ReduceOp.SUM, ReduceOp.AVG):
            out = out + r
        elif op is ReduceOp.PROD:
            out = out * r
        elif op is ReduceOp.MAX:
            out = torch.maximum(out, r)
        elif op is ReduceOp.MIN:
            out = torch.minimum(out, r)
        elif op is ReduceOp.BAND:
            out = out & r
        elif op is ReduceOp.BOR:
            out = out | r
        else:
            out = out ^ r
    if op is ReduceOp.AVG:
        out = out / len(rows)
    return out.to(dtype)


def _rows(dtype: torch.dtype, n: int, count: int, gen: torch.Generator) -> list[torch.Tensor]:
    if dtype.is_floating_point:
        rows = [torch.randn(count, generator=gen).to(dtype) for _ in range(n)]
        rows[0][5] = float("nan")  # max/min propagate NaN like torch.maximum/minimum
        rows[-1][7] = float("inf")
        return rows
    if dtype is torch.bool:
        return [torch.randint(0, 2, (count,), generator=gen).bool() for _ in range(n)]
    lo, hi = (0, 256) if dtype is torch.uint8 else (-128, 128) if dtype is torch.int8 else (-1000, 1000)
    return [torch.randint(lo, hi, (count,), generator=gen).to(dtype) for _ in range(n)]


@needs_native
@pytest.mark.parametrize("dtype", WIRE_DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_native_reductions_match_torch_for_every_op_and_rank_count(dtype):
    """Every supported (dtype, op) at 1, 2, 3 and 5 rows, over a count that is not a multiple of the vector width
    or block (integers wrap like torch's; bitwise ops on floats and AVG on integers are refused, not guessed);
    ``out`` may be one of the rows, as the engine uses it."""
    gen = torch.Generator().manual_seed(7)
    code = WIRE_DTYPES.index(dtype) + 1
    checked = 0
    for o, op in enumerate(OPS):
        supported = bool(native.lib.sg_reduce_supported(code, o))
        expected = (
            op not in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR)
            if dtype.is_floating_point
            else op is not ReduceOp.AVG
        )
        assert supported == expected, (dtype, op)
        if not supported:
            continue
        for n in (1, 2, 3, 5):
            rows = _rows(dtype, n, 1037, gen)
            want = _reference(rows, op)
            out = rows[n // 2]  # in place over one of the rows
            ptrs = (ctypes.c_void_p * n)(*[r.data_ptr() for r in rows])
            assert native.lib.sg_reduce(code, o, out.data_ptr(), ptrs, n, out.numel()) == native.SG_OK
            if dtype.is_floating_point:
                assert torch.equal(out.isnan(), want.isnan()), (dtype, op, n)
                torch.testing.assert_close(out.nan_to_num(), want.nan_to_num(), rtol=0, atol=0)
            else:
                assert torch.equal(out, want), (dtype, op, n)
            checked += 1
    assert checked


@needs_native
def test_a_combination_it_was_not_built_for_is_refused_before_any_step():
    g = native.Group(n=2, rank=0, slot=4096, chunk=4096)
    step = g.step
    f32, band = WIRE_DTYPES.index(torch.float32) + 1, OPS.index(ReduceOp.BAND)
    status = native.lib.sg_all_reduce(ctypes.addressof(g), 0, 4, f32, band, b"\0" * 24, 0)
    assert status == native.SG_UNSUPPORTED and g.step == step


def test_the_engine_path_and_why_are_reported(monkeypatch):
    """What ``sagellm-comm info`` shows for shm: the path groups will run and the reason."""
    path, why = probes.engine_path(MemoryConfig.from_options({"engine": "python"}))
    assert path == "python" and "engine=python" in why
    path, why = probes.engine_path(MemoryConfig.from_options())
    if native.NATIVE_AVAILABLE:
        assert path == "native" and "native engine" in why and "all_reduce is called through" in why
        assert "native engine" in probes.shm_available()[1]
    else:
        assert path == "python" and native.NATIVE_REASON in why
    monkeypatch.setattr(native, "lib", None)
    monkeypatch.setattr(native, "NATIVE_REASON", "libsgshm.so missing (test)")
    path, why = probes.engine_path(MemoryConfig.from_options({"engine": "native"}))
    assert path is None and "engine=native was asked for" in why and "missing (test)" in why
    path, why = probes.engine_path(MemoryConfig.from_options())
    assert path == "python" and "missing (test)" in why


@needs_native
@pytest.mark.multirank
def test_a_group_runs_native_only_if_every_rank_can():
    """Rank 1 runs the Python engine: the whole group does, saying which rank held it back, and computes right.
    Asking for native on rank 0 then is an error at init that names rank 1."""
    with RankPool(2) as pool:
        r0, r1 = pool.run(native_tasks.engines_of_a_mixed_group, "python", timeout=120)
        assert r0["path"] == r1["path"] == "python" and r0["wrong"] == r1["wrong"] == 0, (r0, r1)
        assert "rank(s) [1]" in r0["why"], r0
        r0, r1 = pool.run(native_tasks.engines_of_a_mixed_group, "python", "native", timeout=120)
        assert r0["error"] == ErrorCode.COMM_BACKEND_NOT_SUPPORTED.value and "rank(s) [1]" in r0["message"], r0
        assert r1["path"] == "python"
        r0, r1 = pool.run(native_tasks.engines_of_a_mixed_group, "auto", timeout=120)
        assert r0["path"] == r1["path"] == "native" and r0["wrong"] == 0, (r0, r1)


@needs_native
@pytest.mark.multirank
def test_16_bit_floats_accumulate_in_fp32_and_round_once_identically_on_every_rank(comm_pools):
    """2048 + 1 + 1 in fp16 (and 256 + 1 + 1 in bf16), where the spacing is 2: adding pairwise rounds each sum back
    to 2048; accumulating in fp32 gives 2050 (258), which every rank must get bit for bit."""
    results = comm_pools.get(3).run(native_tasks.half_sums, 4099, timeout=120)
    for r in results:
        assert r["path"] == "native"
        assert r["torch.float16"] == [2050.0] and r["torch.bfloat16"] == [258.0], r


@pytest.mark.parametrize("require", ["", "1"])
def test_a_build_without_a_compiler_falls_back_to_a_pure_wheel_or_fails_when_required(tmp_path, require):
    """No C compiler at install time: the wheel is built without the native engine (pure, with a note saying why)
    -- unless SAGELLM_COMM_BUILD_NATIVE=1 asked for it, which makes the build fail."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    package = Path(__file__).resolve().parent.parent
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "SAGELLM_COMM_BUILD_NATIVE": require}
    proc = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(package)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if require:
        assert proc.returncode != 0 and "native engine" in proc.stderr and "no-such-cc" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert "the Python path will be used" in proc.stderr and "no-such-cc" in proc.stderr
    wheels = [p.name for p in (tmp_path / "dist").glob("*.whl")]
    assert len(wheels) == 1 and wheels[0].endswith("-py3-none-any.whl"), wheels


@pytest.mark.skipif(native.SIGNAL_CHECK is None, reason=f"the all_reduce entry is {native.ALL_REDUCE_ENTRY}")
@pytest.mark.multirank
def test_ctrl_c_stops_a_native_wait_at_once():
    with RankPool(2) as pool:
        r0, _ = pool.run(native_tasks.interrupted_wait, 3.0, timeout=120)
    assert r0["interrupted_after_s"] is not None and r0["interrupted_after_s"] < 2.0, r0


@needs_native
@pytest.mark.multirank
def test_the_native_engine_runs_through_ctypes_where_the_extension_is_missing():
    with RankPool(3) as pool:
        results = pool.run(native_tasks.through_ctypes, timeout=120)
    for r in results:
        assert r == {"wrong": 0, "path": "native", "call": "sg_all_reduce", "interrupt_hook": None}, r
