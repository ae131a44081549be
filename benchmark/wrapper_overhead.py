"""What sagellm-comm's wrapper costs over the raw engine it wraps (torch.distributed Gloo), per all_reduce call.

Both run on the same ranks in one process group setup: ours is ``comm.all_reduce(t, op="sum")`` on the gloo backend,
raw is ``torch.distributed.all_reduce`` on a separate ``new_group(backend="gloo")``. Blocks of back-to-back calls
alternate (ours, raw, raw, ours, ...) so both see the same machine noise; the time of a block is the max over ranks,
per-op time is block time / calls, and the table gives the median over blocks and the ratio. No assertions: this
machine is shared and noisy, read the ratios.

    uv run python benchmark/wrapper_overhead.py [--nproc 1 2] [--blocks 9]
"""

from __future__ import annotations

import argparse
import statistics
import time

SIZES = (4096, 65536, 1 << 20, 16 << 20)


def _calls(nbytes: int) -> int:
    return 2000 if nbytes <= 65536 else (200 if nbytes <= 1 << 20 else 20)


def rank_main(blocks: int, single_process: bool) -> dict[int, dict[str, list[float]]]:
    import torch
    import torch.distributed as dist

    from sagellm_comm import get_comm_backend

    comm = get_comm_backend("gloo")
    comm.init_process_group()
    raw = dist.new_group(backend="gloo")
    out: dict[int, dict[str, list[float]]] = {}
    for nbytes in SIZES:
        ours_t, raw_t = torch.zeros(nbytes // 4), torch.zeros(nbytes // 4)
        n = _calls(nbytes) * (5 if single_process else 1)
        res: dict[str, list[float]] = {"ours": [], "raw": []}
        for b in range(blocks):
            for name in ("ours", "raw") if b % 2 == 0 else ("raw", "ours"):
                dist.barrier()
                start = time.perf_counter()
                if name == "ours":
                    for _ in range(n):
                        comm.all_reduce(ours_t, op="sum")
                else:
                    for _ in range(n):
                        dist.all_reduce(raw_t, group=raw)
                res[name].append((time.perf_counter() - start) / n)
        out[nbytes] = res
    dist.destroy_process_group(raw)
    comm.destroy()
    return out


def main() -> None:
    from sagellm_comm.launch import launch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--blocks", type=int, default=9)
    args = ap.parse_args()
    print("| ranks | size (B) | ours (us/op) | raw gloo (us/op) | ours/raw | overhead (us/op) |")
    print("|---|---|---|---|---|---|")
    for nproc in args.nproc:
        per_rank = launch(rank_main, nproc, args.blocks, nproc == 1, timeout=600)
        for nbytes in SIZES:
            med = {k: statistics.median(max(r[nbytes][k][i] for r in per_rank) for i in range(args.blocks)) * 1e6
                   for k in ("ours", "raw")}
            print(f"| {nproc} | {nbytes} | {med['ours']:.1f} | {med['raw']:.1f} | {med['ours'] / med['raw']:.3f} "
                  f"| {med['ours'] - med['raw']:+.1f} |", flush=True)


if __name__ == "__main__":
    main()
