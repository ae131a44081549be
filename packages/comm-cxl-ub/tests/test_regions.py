"""Region providers, configuration and availability of the memory-semantic backends (no rank processes)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import torch
from sagellm_protocol import ReduceOp

from sagellm_comm import InvalidArgumentError, get_comm_backend, list_comm_backends
from sagellm_comm_cxl_ub import ordering, probes
from sagellm_comm_cxl_ub.config import MemoryConfig, parse_bytes
from sagellm_comm_cxl_ub.layout import LINE, Layout
from sagellm_comm_cxl_ub.reduce_kernels import reduce_rows
from sagellm_comm_cxl_ub.regions import DeviceRegionProvider, DirectoryRegionProvider


def test_directory_region_is_private_reserved_and_unlinkable(tmp_path):
    prov = DirectoryRegionProvider(str(tmp_path))
    region = prov.create("k1", 1 << 20, 0)
    try:
        st = os.stat(region.handle)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_size == 1 << 20
        assert st.st_blocks * 512 >= 1 << 20  # reserved up front, not sparse
        other = prov.attach(region.handle, 1 << 20, 0)
        other.mapping[100:104] = b"abcd"
        assert region.mapping[100:104] == b"abcd"  # one memory, two mappings
        prov.release_name(region)
        prov.release_name(region)  # idempotent
        assert not os.path.exists(region.handle)
        other.mapping[0:1] = b"x"  # the mapping outlives the name
        other.close()
    finally:
        region.close()
    with pytest.raises(FileExistsError):
        r = prov.create("dup", 4096, 0)
        try:
            prov.create("dup", 4096, 0)
        finally:
            prov.release_name(r)
            r.close()
    with pytest.raises(InvalidArgumentError):
        prov.create("../escape", 4096, 0)
    with pytest.raises(InvalidArgumentError):
        prov.attach("/etc/passwd", 4096, 0)


def test_device_windows_are_aligned_consecutive_and_bounded(tmp_path):
    dev = tmp_path / "cxl.mem"
    dev.write_bytes(b"\0" * (8 << 20))
    prov = DeviceRegionProvider(str(dev), offset=4096)
    assert prov.available()[0]
    for index, size in ((0, 3 << 20), (1, 1 << 20), (2, 4 << 20)):
        prov.reserve(index, size)  # every rank reserves every group's window, member or not
    a = prov.create("ignored", 3 << 20, 0)
    b = prov.create("ignored", 1 << 20, 1)
    try:
        assert a.handle == f"{dev}@{2 << 20}" and b.handle == f"{dev}@{6 << 20}"  # 2 MiB aligned, no overlap
        a.mapping[a.offset : a.offset + 4] = b"wxyz"
        with open(dev, "rb") as f:
            f.seek(2 << 20)
            assert f.read(4) == b"wxyz"
        with pytest.raises(InvalidArgumentError, match="different order"):
            prov.attach(f"{dev}@0", 1 << 20, 1)
        with pytest.raises(InvalidArgumentError, match="holds"):
            prov.create("ignored", 4 << 20, 2)  # its window would end past the device
        with pytest.raises(InvalidArgumentError, match="window"):
            prov.create("ignored", 2 << 20, 1)  # more than was reserved
        with pytest.raises(InvalidArgumentError, match="reserve"):
            prov.create("ignored", 1 << 20, 3)
    finally:
        a.close()
        b.close()
    assert dev.exists()  # devices are never unlinked


def test_layout_keeps_every_polled_word_on_its_own_line():
    lay = Layout(4, 512 << 10, 256 << 10)
    words = [lay.step_word(r) for r in range(4)] + [lay.doorbell_word(r) for r in range(4)]
    words += [lay.sent_word(s, d) for s in range(4) for d in range(4)] + [
        lay.acked_word(s, d) for s in range(4) for d in range(4)
    ]
    assert len({w // LINE for w in words}) == len(words)
    assert max(words) < lay.slots_off <= lay.parity_off(0) < lay.parity_off(1) < lay.mailboxes_off < lay.size
    assert lay.parity_off(1) - lay.parity_off(0) == 4 * (512 << 10)
    assert lay.slots_off % 4096 == 0 and lay.size % 4096 == 0


def test_sizes_and_config(monkeypatch):
    assert parse_bytes("x", "4M") == 4 << 20 and parse_bytes("x", "256KiB") == 256 << 10 and parse_bytes("x", 7) == 7
    for bad in ("lots", "-1", "0", "4Q"):
        with pytest.raises(InvalidArgumentError):
            parse_bytes("x", bad)
    monkeypatch.setenv("SAGELLM_COMM_SHM_SLOT_BYTES", "100K")
    cfg = MemoryConfig.from_options({"chunk_bytes": 1000})
    assert cfg.slot_bytes == 102400 and cfg.chunk_bytes == 1024  # rounded to pages / lines
    assert MemoryConfig.from_options({"slot_bytes": "1M"}).slot_bytes == 1 << 20  # options beat the environment
    crowded = cfg.wait_budget(ranks_here=10_000)
    assert crowded[0] == 0.0 and crowded[1] > 0  # more ranks than cores: never spin, yield then sleep
    assert cfg.wait_budget(ranks_here=1)[0] > 0


def test_reduce_rows_matches_torch_for_every_op_and_rank_count():
    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 3, 4):
        for op in ReduceOp:
            dtype = torch.int32 if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) else torch.float64
            rows = torch.randint(-50, 50, (n, 257), generator=g).to(dtype)
            if op is ReduceOp.PROD:
                rows = rows.clamp(1, 3)
            want = rows[0].clone()
            for i in range(1, n):
                want = {
                    ReduceOp.SUM: torch.add,
                    ReduceOp.AVG: torch.add,
                    ReduceOp.MAX: torch.maximum,
                    ReduceOp.MIN: torch.minimum,
                    ReduceOp.PROD: torch.mul,
                    ReduceOp.BAND: torch.bitwise_and,
                    ReduceOp.BOR: torch.bitwise_or,
                    ReduceOp.BXOR: torch.bitwise_xor,
                }[op](want, rows[i])
            if op is ReduceOp.AVG:
                want = want / n
            for holds in (None, 0, n - 1):
                out = torch.empty(257, dtype=dtype) if holds is None else rows[holds].clone()
                reduce_rows(rows, op, out, holds=holds)
                assert torch.equal(out, want), (n, op, holds)


def test_two_rank_results_are_bit_identical_on_both_ranks():
    """Rank 0 folds its peer into x0, rank 1 into x1: a op b == b op a bit for bit, including fp16/bf16."""
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        rows = (torch.randn(2, 4099, generator=g) * 1000).to(dtype)
        for op in (ReduceOp.SUM, ReduceOp.AVG, ReduceOp.MAX, ReduceOp.MIN, ReduceOp.PROD):
            r0, r1 = rows[0].clone(), rows[1].clone()
            reduce_rows(rows, op, r0, holds=0)
            reduce_rows(rows, op, r1, holds=1)
            assert torch.equal(
                r0.view(torch.int16 if dtype != torch.float32 else torch.int32),
                r1.view(torch.int16 if dtype != torch.float32 else torch.int32),
            ), (dtype, op)


def test_world_of_one_runs_every_op_and_leaves_no_file(tmp_path):
    comm = get_comm_backend("shm", shm_dir=str(tmp_path))
    comm.init_process_group(world_size=1, rank=0)
    try:
        assert comm.memory_bytes() > 0 and os.listdir(tmp_path) == []  # mapped, already unnamed
        t = torch.arange(10.0)
        assert torch.equal(comm.all_reduce(t), torch.arange(10.0))
        assert torch.equal(comm.all_gather(t)[0], t)
        out = torch.empty(10)
        comm.reduce_scatter(out, torch.arange(10.0))
        assert torch.equal(out, torch.arange(10.0))
        comm.barrier()
    finally:
        comm.destroy()
    assert comm.memory_bytes() == 0


def test_off_x86_the_engine_needs_the_native_library_for_ordering(monkeypatch):
    """aarch64 does not keep stores in order: the flags are ordered by the native library's atomics and fences;
    without the library the engine refuses to run there, saying why."""
    monkeypatch.setattr(ordering.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(ordering.native, "lib", None)
    ok, why = probes.ordering_supported()
    assert not ok and "aarch64" in why and "native library" in why
    monkeypatch.setattr(ordering.native, "lib", object())
    ok, why = probes.ordering_supported()
    assert ok and "aarch64" in why


def test_auto_passes_over_shm_when_ranks_span_hosts(monkeypatch):
    """shm stays available (the hierarchical composite uses it inside each host) but auto does not pick it for a
    job whose launcher says it spans several hosts."""
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    ok, why = probes.one_host_job()
    assert not ok and "several hosts" in why
    assert probes.shm_available()[0]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert probes.one_host_job()[0]


def test_cxl_and_ub_say_why_they_are_unavailable(monkeypatch, tmp_path):
    monkeypatch.delenv("SAGELLM_COMM_CXL_PATH", raising=False)
    ok, why = probes.cxl_available()
    assert not ok and "SAGELLM_COMM_CXL_PATH" in why
    monkeypatch.setenv("SAGELLM_COMM_CXL_PATH", str(tmp_path / "missing"))
    ok, why = probes.cxl_available()
    assert not ok and "does not exist" in why
    monkeypatch.setattr(probes, "UB_SYSFS", (str(tmp_path / "no-ubcore"),))
    ok, why = probes.ub_available()
    assert not ok and "no UB device" in why
    # a registered UB device without a configured segment: still unavailable, and the reason says what to set
    (tmp_path / "ubcore" / "ubc0").mkdir(parents=True)
    monkeypatch.setattr(probes, "UB_SYSFS", (str(tmp_path / "ubcore"),))
    ok, why = probes.ub_available()
    assert not ok and "SAGELLM_COMM_UB_SEGMENT" in why


def test_info_lists_the_backends_with_their_region_sizes():
    rows = {s.name: s for s in list_comm_backends()}
    assert rows["shm"].available and "region per group" in rows["shm"].reason
    assert not rows["ub"].available
    out = subprocess.run(
        [sys.executable, "-m", "sagellm_comm.cli.main", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    shm = {b["name"]: b for b in json.loads(out)["backends"]}["shm"]
    assert shm["available"] and "MiB at 2 ranks" in shm["reason"]


def test_posted_ops_are_matched_by_identity_not_by_their_tensors():
    """Two receives posted from one peer, the later one matched first (a tag that arrived out of order): removing
    it from the posted list compared the ops field by field, tensors included, and raised "Boolean value of Tensor
    with more than one value is ambiguous" (seen in CI on cxl's p2p_tags)."""
    from sagellm_comm_cxl_ub.p2p import _Op

    first, second = (
        _Op("recv", 1, torch.zeros(8, dtype=torch.uint8), tag=1),
        _Op("recv", 1, torch.zeros(8, dtype=torch.uint8), tag=2),
    )
    posted = [first, second]
    posted.remove(second)
    assert posted == [first] and first != second
