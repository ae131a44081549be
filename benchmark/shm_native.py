"""``uv run python -m benchmark.shm_native [--ranks 2 4] [--sizes 4K ... 16M]``: the shm engine's native path against
its Python path and raw torch.distributed Gloo, with the hardware floors measured in the same run.

For each world size, the same rank processes hold three contenders, interleaved block by block (so they share the
machine's noise): ``shm`` with ``engine="native"`` (the compiled hot loop, csrc/), ``shm`` with ``engine="python"``
(the fallback), and ``dist.all_reduce`` on the raw Gloo group. float32 sum, every result checked first. A block is
``calls`` back-to-back calls after the contender's own barrier; its time is the slowest rank's; the table gives
the median over blocks. Floors, measured in this run before the ranks start (../shared/REFERENCE.md):

- (a) two processes ping-ponging a flag through shared memory in plain Python: the round trip;
- (b) p processes each copying 64 MiB at once (torch, one thread each): aggregate bytes read + written per second.
  An all_reduce of n bytes on p ranks moves at least 2·n·p bytes through memory (every rank reads its input and
  writes its output once), so its floor is 2·n·p / (b).

Writes a markdown table and every number (JSON) to ``--output-dir`` (default .benchmarks/shm_native).
Run it with nothing else running: 2 cores are easily disturbed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

SIZES = ["4K", "16K", "64K", "256K", "1M", "4M", "16M"]
CONTENDERS = ("python", "native", "raw gloo")
PING_BYTES = 4096


# ---------------------------------------------------------------------------------------------------- floor (a)
def _pong(path: str, rounds: int, blocks: int) -> None:
    import mmap

    import numpy as np

    with open(path, "r+b") as f:
        mm = mmap.mmap(f.fileno(), PING_BYTES)
    w = np.ndarray((2,), dtype=np.int64, buffer=mm)
    for i in range(1, rounds * blocks + 1):
        while w[0] != i:
            pass
        w[1] = i
    del w
    mm.close()


def ping_pong_floor(rounds: int = 20000, blocks: int = 7) -> float:
    """Median round trip (seconds) of a flag ping-pong between two processes in plain Python (numpy words)."""
    import mmap
    import multiprocessing as mp
    import os
    import tempfile
    import time

    import numpy as np

    fd, path = tempfile.mkstemp(prefix="sagellm-pingpong-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.ftruncate(fd, PING_BYTES)
    os.close(fd)
    try:
        with open(path, "r+b") as f:
            mm = mmap.mmap(f.fileno(), PING_BYTES)
        w = np.ndarray((2,), dtype=np.int64, buffer=mm)
        peer = mp.get_context("spawn").Process(target=_pong, args=(path, rounds, blocks), daemon=True)
        peer.start()
        times, i = [], 0
        for _ in range(blocks):
            t0 = time.perf_counter()
            for _ in range(rounds):
                i += 1
                w[0] = i
                while w[1] != i:
                    pass
            times.append((time.perf_counter() - t0) / rounds)
        peer.join(30)
        del w
        mm.close()
        return statistics.median(times)
    finally:
        os.unlink(path)


# ---------------------------------------------------------------------------------------------------- floor (b)
def _copier(barrier: Any, out: Any, index: int, nbytes: int, repeats: int) -> None:
    import time

    import torch

    torch.set_num_threads(1)
    src = torch.ones(nbytes, dtype=torch.uint8)
    dst = torch.empty_like(src)
    dst.copy_(src)
    for r in range(repeats):
        barrier.wait()
        t0 = time.perf_counter()
        dst.copy_(src)
        out[r * 64 + index] = time.perf_counter() - t0


def copy_floor(p: int, nbytes: int = 64 << 20, repeats: int = 5) -> float:
    """Aggregate copy bandwidth (bytes read + written per second) of ``p`` processes copying ``nbytes`` each at
    once: per repeat, all bytes over the slowest process's time; the median over repeats."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(p), ctx.Array("d", 64 * repeats, lock=False)
    procs = [ctx.Process(target=_copier, args=(barrier, out, i, nbytes, repeats), daemon=True) for i in range(p)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(600)
    return statistics.median(2 * nbytes * p / max(out[r * 64 + i] for i in range(p)) for r in range(repeats))


# -------------------------------------------------------------------------------------------------- the ranks
def bench_rank(
    sizes: list[str], blocks: int, small_calls: int, small_blocks: int, warmup: int, algos: list[str] | None = None
) -> list[dict]:
    import torch
    import torch.distributed as dist

    from sagellm_comm import get_comm_backend
    from sagellm_comm.benchmark.metrics import parse_size
    from sagellm_comm.benchmark.timing import interleaved

    torch.set_num_threads(1)
    native = get_comm_backend("shm", engine="native")
    native.init_process_group(timeout=600.0)
    python = get_comm_backend("shm", engine="python")
    python.init_process_group(timeout=600.0)
    gloo = get_comm_backend("gloo")  # initializes torch.distributed's default (Gloo) group: raw dist.* runs on it
    gloo.init_process_group(timeout=600.0)
    pinned = {f"native {a}": get_comm_backend("shm", engine="native", allreduce=a) for a in algos or ()}
    for comm in pinned.values():
        comm.init_process_group(timeout=600.0)
    try:
        paths = (native.engine_path()[0], python.engine_path()[0])
        if paths != ("native", "python"):
            raise RuntimeError(f"engine paths are {paths}, not ('native', 'python'): {native.engine_path()[1]}")
        rank, n = native.get_rank(), native.get_world_size()
        fns = {
            "python": python.all_reduce,
            "native": native.all_reduce,
            "raw gloo": dist.all_reduce,
            **{k: c.all_reduce for k, c in pinned.items()},
        }
        barriers = {
            "python": python.barrier,
            "native": native.barrier,
            "raw gloo": dist.barrier,
            **{k: c.barrier for k, c in pinned.items()},
        }
        rows = []
        for size in sizes:
            nbytes = parse_size(size)
            numel = nbytes // 4
            wrong = {}
            for name, fn in fns.items():  # integer-valued floats: exact in any order
                t = torch.arange(numel, dtype=torch.float32) % 13 + rank
                fn(t)
                want = (torch.arange(numel, dtype=torch.float32) % 13) * n + n * (n - 1) // 2
                wrong[name] = int((t != want).sum())
            bufs = {k: torch.zeros(numel) for k in fns}
            small = nbytes <= (256 << 10)
            calls, nblocks = (small_calls, small_blocks) if small else (max(1, (4 << 20) // nbytes), blocks)
            times = interleaved(
                {k: (lambda f, b: lambda: f(b))(fn, bufs[k]) for k, fn in fns.items()},
                blocks=nblocks,
                calls=calls,
                warmup=warmup,
                barriers=barriers,
            )
            flat = torch.tensor(
                [x for k in fns for x in times[k]] + [float(v) for v in wrong.values()], dtype=torch.float64
            )
            dist.all_reduce(flat, op=dist.ReduceOp.MAX)  # per block: the slowest rank; wrong: any rank's count
            per = flat[: len(fns) * nblocks].view(len(fns), nblocks)
            rows.append(
                {
                    "bytes": nbytes,
                    "calls": calls,
                    "blocks": nblocks,
                    "us": {k: statistics.median(per[i].tolist()) * 1e6 for i, k in enumerate(fns)},
                    "wrong": {k: int(flat[len(fns) * nblocks + i]) for i, k in enumerate(fns)},
                }
            )
        return rows
    finally:
        for comm in (native, python, gloo, *pinned.values()):
            comm.destroy()


# -------------------------------------------------------------------------------------------------- reporting
def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def table(results: dict[int, list[dict]], ping_s: float, copy_bps: dict[int, float]) -> str:
    pinned = [k for k in next(iter(results.values()))[0]["us"] if k.startswith("native ")]
    lines = [
        "| ranks | size | python path (us) | native path (us) | raw gloo (us) | native vs python | gloo / native "
        "| native / floor (a) | floor 2·n·p/(b) (us) | % of floor (b) | wrong |"
        + "".join(f" {k} (us) |" for k in pinned),
        "|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(pinned),
    ]
    for p, rows in results.items():
        for r in rows:
            us, n = r["us"], r["bytes"]
            floor_b = 2 * n * p / copy_bps[p] * 1e6
            wrong = sum(r["wrong"].values())
            lines.append(
                f"| {p} | {_size(n)} | {us['python']:.1f} | {us['native']:.1f} | {us['raw gloo']:.1f} | "
                f"{us['python'] / us['native']:.2f}x | {us['raw gloo'] / us['native']:.1f}x | "
                f"{us['native'] / (ping_s * 1e6):.1f}x | {floor_b:.1f} | {100 * floor_b / us['native']:.0f}% | "
                f"{wrong or 'none'} |" + "".join(f" {us[k]:.1f} |" for k in pinned)
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import os

    p = argparse.ArgumentParser(prog="python -m benchmark.shm_native", description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    p.add_argument("--sizes", nargs="+", default=SIZES)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--blocks", type=int, default=9, help="timed blocks per contender above 256 KiB (default 9)")
    p.add_argument("--small-blocks", type=int, default=21, help="timed blocks up to 256 KiB (default 21)")
    p.add_argument("--small-calls", type=int, default=50, help="calls per block up to 256 KiB (default 50)")
    p.add_argument(
        "--algos",
        nargs="*",
        choices=["direct", "split"],
        default=[],
        help="also the native engine pinned to these all_reduce algorithms",
    )
    p.add_argument("--copy-mib", type=int, default=64, help="MiB each process copies for floor (b) (default 64)")
    p.add_argument("--ping-rounds", type=int, default=20000, help="round trips per block for floor (a)")
    p.add_argument("--output-dir", default=".benchmarks/shm_native")
    args = p.parse_args(argv)
    from sagellm_comm_cxl_ub import native

    if not native.NATIVE_AVAILABLE:
        print(f"{p.prog}: the native engine is not available here: {native.NATIVE_REASON}", file=sys.stderr)
        return 2
    from benchmark import shm_native as me  # the ranks unpickle the task by module name
    from benchmark.lab_report import write_report
    from sagellm_comm.launch import RankPool

    ping = ping_pong_floor(args.ping_rounds)
    copy = {n: copy_floor(n, args.copy_mib << 20) for n in args.ranks}
    results = {}
    for n in args.ranks:
        with RankPool(n, env={"OMP_NUM_THREADS": "1"}) as pool:
            results[n] = pool.run(
                me.bench_rank,
                args.sizes,
                args.blocks,
                args.small_calls,
                args.small_blocks,
                args.warmup,
                args.algos,
                timeout=3600,
            )[0]
    text = (
        f"## shm all_reduce float32: native vs Python path vs raw torch.distributed Gloo ({os.cpu_count()} "
        f"cores); contenders interleaved block by block on the same ranks, median over blocks of the slowest "
        f"rank's time per call\n\nfloor (a), plain-Python shared-memory ping-pong round trip: "
        f"{ping * 1e6:.2f} us; floor (b), p-process aggregate copy bandwidth ({args.copy_mib} MiB each, read + "
        "write): "
        + ", ".join(f"p={n}: {bps / 1e9:.1f} GB/s" for n, bps in copy.items())
        + "\n\n"
        + table(results, ping, copy)
    )
    print(text)
    write_report(
        args.output_dir,
        "shm_native",
        text,
        {"ping_pong_s": ping, "copy_bps": copy, "results": {str(k): v for k, v in results.items()}},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
