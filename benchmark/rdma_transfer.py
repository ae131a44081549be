"""KV-block transfers on the rdma backend vs raw torch.distributed Gloo send/recv, side by side in one run.

    uv run python -m benchmark.rdma_transfer                 # one host, then two simulated hosts (netns lab)
    uv run python -m benchmark.rdma_transfer --where host    # one host only

Between 2 ranks, rank 0 moves the same bytes to rank 1 four ways, in alternating blocks (ours, gloo, gloo, ours,
...) so both see the same machine noise:

- ``rdma write``: one batched one-sided write through ``comm.transfer_engine`` (registered regions, one handle);
- ``raw NIXL write``: the same batch posted on the NIXL agent directly (our engine's overhead is the difference);
- ``rdma send/recv``: the backend's two-sided send/recv of the whole buffer (the receiver reads it);
- ``gloo send/recv``: raw ``torch.distributed`` Gloo, one send per block of the batch (isend all, then wait).

Workloads: 64 x 256 KiB, 1 x 64 MiB, 64 x 4 KiB. A block is ``calls`` back-to-back transfers after a Gloo barrier;
the time per transfer is the block's time (the max over the two ranks) / calls; the table gives the median over
blocks. Floors measured in the same run: one core copying 256 MiB with torch (bytes read + written) and, between
the simulated hosts, one plain TCP stream over the veth moving the same 64 MiB (what both engines use there).

"Two simulated hosts" is the netns lab with ``isolate=True`` (own network, PID and IPC namespaces: UCX sees two
machines and uses TCP over the veth; without the isolation it would use cross-memory attach). Writes
``rdma_<timestamp>.md`` and ``.json`` to ``--output-dir`` (default ``.benchmarks/rdma``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

WORKLOADS = (("64 x 256 KiB", 64, 256 << 10), ("1 x 64 MiB", 1, 64 << 20), ("64 x 4 KiB", 64, 4 << 10))
ENGINES = ("rdma write", "raw NIXL write", "rdma send/recv", "gloo send/recv")


def _calls(nbytes: int) -> int:
    return 3 if nbytes >= 32 << 20 else 8 if nbytes >= 4 << 20 else 40


def bench_rank(blocks: int = 7, with_tcp_floor: bool = False, port_offset: int = 1) -> dict[str, Any]:
    """One rank of the benchmark (both settings): returns its per-block times and the transport used."""
    import torch
    import torch.distributed as dist

    from sagellm_comm import get_comm_backend

    comm = get_comm_backend("rdma")
    comm.init_process_group(timeout=120.0)
    rank, peer = comm.get_rank(), 1 - comm.get_rank()
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]) + port_offset
    dist.init_process_group("gloo", init_method=f"tcp://{addr}:{port}", rank=rank, world_size=2)
    eng = comm.transfer_engine
    total = max(n * size for _, n, size in WORKLOADS)
    src = _bytes_of(rank, total)
    dst = torch.zeros(total, dtype=torch.uint8)
    src_r, dst_r = eng.register(src), eng.register(dst)
    remote_dst = eng.exchange([src_r, dst_r])[peer][1]
    nixl = eng.agent._agent  # the raw NIXL agent under our engine
    peer_agent = eng.connect(peer)
    times: dict[str, dict[str, list[float]]] = {}

    def rdma_write(n: int, size: int) -> Callable[[], None]:
        spans = [(src_r, i * size, remote_dst, i * size, size) for i in range(n)]
        return lambda: eng.write(spans).wait(120.0)

    def raw_write(n: int, size: int) -> Callable[[], None]:
        local = nixl.get_xfer_descs([(src.data_ptr() + i * size, size, 0) for i in range(n)], "DRAM")
        remote = nixl.get_xfer_descs([(remote_dst.address + i * size, size, 0) for i in range(n)], "DRAM")

        def go() -> None:
            with eng.agent._lock:
                h = nixl.initialize_xfer("WRITE", local, remote, peer_agent)
                state = nixl.transfer(h)
            while state == "PROC":
                with eng.agent._lock:
                    state = nixl.check_xfer_state(h)
            assert state == "DONE", state
            with eng.agent._lock:
                nixl.release_xfer_handle(h)

        return go

    def rdma_sendrecv(n: int, size: int) -> Callable[[], None]:
        if rank == 0:
            return lambda: comm.send(src[: n * size], 1)
        return lambda: comm.recv(dst[: n * size], 0)

    def gloo_sendrecv(n: int, size: int) -> Callable[[], None]:
        def go() -> None:
            if rank == 0:
                works = [dist.isend(src[i * size : (i + 1) * size], 1) for i in range(n)]
            else:
                works = [dist.irecv(dst[i * size : (i + 1) * size], 0) for i in range(n)]
            for w in works:
                w.wait()

        return go

    for label, n, size in WORKLOADS:
        calls = _calls(n * size)
        fns = {
            "rdma write": rdma_write(n, size) if rank == 0 else (lambda: None),
            "raw NIXL write": raw_write(n, size) if rank == 0 else (lambda: None),
            "rdma send/recv": rdma_sendrecv(n, size),
            "gloo send/recv": gloo_sendrecv(n, size),
        }
        per: dict[str, list[float]] = {e: [] for e in ENGINES}
        for fn in fns.values():  # warm up every path once (connections, first registrations, page faults)
            fn()
            dist.barrier()
        for b in range(blocks):
            order = ENGINES if b % 2 == 0 else tuple(reversed(ENGINES))
            for e in order:
                dist.barrier()
                t0 = time.perf_counter()
                for _ in range(calls):
                    fns[e]()
                if e.endswith("write"):
                    dist.barrier()  # the target's view: the block ends when the initiator saw it land
                per[e].append((time.perf_counter() - t0) / calls)
        times[label] = per
    tcp = _tcp_stream(rank, addr, port + 1, src, dst, blocks) if with_tcp_floor else []
    # every path wrote rank 0's bytes to the same offsets of rank 1's buffer: check them all
    dist.barrier()
    if rank == 1 and not torch.equal(dst, _bytes_of(0, total)):
        raise AssertionError("rank 1's buffer does not hold rank 0's bytes after the benchmark")
    transport = eng.transport(peer)
    eng.deregister(src_r)
    eng.deregister(dst_r)
    dist.destroy_process_group()
    comm.destroy()
    return {"rank": rank, "times": times, "transport": transport, "tcp_gbps": tcp}


def _tcp_stream(rank: int, addr: str, port: int, src: Any, dst: Any, blocks: int) -> list[float]:
    """The floor between simulated hosts: one plain TCP stream moving the 64 MiB from rank 0 to rank 1 (rank 1
    acknowledges each with one byte); GB/s per repetition."""
    import socket

    nbytes = src.numel()
    if rank == 0:
        server = socket.create_server((addr, port))
        conn, _ = server.accept()
        server.close()
    else:
        for _ in range(200):
            try:
                conn = socket.create_connection((addr, port), timeout=60)
                break
            except OSError:
                time.sleep(0.05)
    out = []
    with conn:
        view = memoryview(dst.numpy())
        for _ in range(blocks):
            t0 = time.perf_counter()
            if rank == 0:
                conn.sendall(memoryview(src.numpy()))
                conn.recv(1)
            else:
                got = 0
                while got < nbytes:
                    got += conn.recv_into(view[got:], nbytes - got)
                conn.sendall(b"k")
            out.append(nbytes / (time.perf_counter() - t0) / 1e9)
    return out


def _bytes_of(rank: int, nbytes: int) -> Any:
    import torch

    return torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=torch.Generator().manual_seed(rank))


def _table(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per workload and engine: median over blocks of the max over ranks (seconds per transfer)."""
    out: dict[str, dict[str, float]] = {}
    for label, _, _ in WORKLOADS:
        out[label] = {}
        for e in ENGINES:
            blocks = len(results[0]["times"][label][e])
            per_block = [max(r["times"][label][e][b] for r in results) for b in range(blocks)]
            out[label][e] = statistics.median(per_block)
    return out


def _markdown(where: str, table: dict[str, dict[str, float]], transport: str, bound_gbps: float | None) -> str:
    lines = [f"### {where} (UCX transport rank 0 -> 1: {transport})", ""]
    head = "| workload | " + " | ".join(f"{e} (ms, GB/s)" for e in ENGINES) + " | rdma write / gloo |"
    if bound_gbps:
        head += " rdma write % of copy bound |"
    lines += [head, "|" + "---|" * (len(ENGINES) + 2 + (1 if bound_gbps else 0))]
    for label, n, size in WORKLOADS:
        row = table[label]
        cells = [f"{row[e] * 1e3:.3f} ({n * size / row[e] / 1e9:.2f})" for e in ENGINES]
        ratio = row["gloo send/recv"] / row["rdma write"]
        line = f"| {label} | " + " | ".join(cells) + f" | {ratio:.2f}x |"
        if bound_gbps:
            # a one-sided copy between processes reads and writes every byte once: 2 x bytes through memory
            line += f" {2 * n * size / row['rdma write'] / 1e9 / bound_gbps * 100:.0f}% |"
        lines.append(line)
    per_block = table["64 x 4 KiB"]
    lines += [
        "",
        f"64 x 4 KiB per block: rdma write {per_block['rdma write'] / 64 * 1e6:.1f} us, gloo "
        f"{per_block['gloo send/recv'] / 64 * 1e6:.1f} us (64 separate sends)",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--where", choices=("host", "netns", "both"), default="both")
    p.add_argument("--blocks", type=int, default=7)
    p.add_argument("--output-dir", default=".benchmarks/rdma")
    args = p.parse_args(argv)
    from benchmark.rdma_transfer import bench_rank as task  # by module name: ranks unpickle it from there
    from sagellm_comm.benchmark import copy_bandwidth
    from sagellm_comm.launch import RankPool

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    report, record = [], {}
    bound = copy_bandwidth()
    bound_gbps = bound.gbps
    report.append(f"single-core copy bound (torch, 256 MiB, read + write counted): {bound_gbps:.1f} GB/s\n")
    if args.where in ("host", "both"):
        with RankPool(2) as pool:
            res = pool.run(task, args.blocks, timeout=900)
        record["host"] = res
        report.append(_markdown("one host, 2 processes", _table(res), res[0]["transport"], bound_gbps))
    if args.where in ("netns", "both"):
        from sagellm_comm_lab import netns

        reason = netns.unavailable_reason()
        if reason:
            report.append(f"### two simulated hosts: not run ({reason})\n")
        else:
            with netns.NetnsLab(2, isolate=True) as lab:
                res = lab.run_ranks(task, [0, 1], args.blocks, True, timeout=900)
            record["netns"] = res
            tcp = statistics.median(res[0]["tcp_gbps"])
            report.append(
                _markdown(
                    "two simulated hosts (netns lab, isolated, unshaped veth)", _table(res), res[0]["transport"], None
                )
            )
            report.append(
                f"floor in the same run: one plain TCP stream over the veth, 64 MiB: {tcp:.2f} GB/s (median)\n"
            )
    text = "\n".join(report)
    print(text)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (out / f"rdma_{stamp}.md").write_text(text)
    (out / f"rdma_{stamp}.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
