"""Environment variables known to cause hangs or confusion (torch, NCCL, OpenMP, device masks), and sagellm-comm's
own variables: valid values, and names nothing reads (typos)."""

from __future__ import annotations

import os
import tempfile

from sagellm_comm.doctor.findings import FAIL, INFO, OK, WARN, Context, Finding

__all__ = ["KNOWN_SAGELLM_VARS", "check_sagellm_env", "check_torch_env"]

CHECK_TORCH = "torch-env"
CHECK_SAGELLM = "sagellm-env"

# what each of the sagellm-comm packages reads; the core lists plugin variables as names only (for typo detection)
KNOWN_SAGELLM_VARS = frozenset(
    {
        "SAGELLM_COMM_TIMEOUT_S",
        "SAGELLM_COMM_DEBUG",
        "SAGELLM_COMM_TRACE_DIR",
        "SAGELLM_COMM_TRACE_ENTRIES",
        "SAGELLM_COMM_TRACE_SIGNAL",
        "SAGELLM_COMM_PLUGINS",
        "SAGELLM_COMM_DISABLE_PLUGINS",
        "SAGELLM_COMM_NODE_ID",
        "SAGELLM_COMM_TOPOLOGY_FILE",
        "SAGELLM_COMM_TOPOLOGY_CACHE",
        "SAGELLM_COMM_CONFORMANCE_WAIT_S",
        "SAGELLM_COMM_JOB_TOKEN",
        "SAGELLM_COMM_BIND_ADDR",
        "SAGELLM_COMM_SHM_SLOT_BYTES",
        "SAGELLM_COMM_SHM_CHUNK_BYTES",
        "SAGELLM_COMM_SHM_SPIN_US",
        "SAGELLM_COMM_SHM_YIELD_US",
        "SAGELLM_COMM_SHM_DIR",
        "SAGELLM_COMM_SHM_ALLREDUCE",
        "SAGELLM_COMM_SHM_ENGINE",
        "SAGELLM_COMM_BUILD_NATIVE",
        "SAGELLM_COMM_CXL_PATH",
        "SAGELLM_COMM_CXL_OFFSET",
        "SAGELLM_COMM_UB_SEGMENT",
        "SAGELLM_COMM_NCCL_PATH",
        "SAGELLM_COMM_NCCL_LIBRARY",
        "SAGELLM_COMM_RCCL_LIBRARY",
        "SAGELLM_COMM_RDMA_PROGRESS_DELAY_US",
        "SAGELLM_COMM_RDMA_TRANSPORT_REPORT",
        "SAGELLM_COMM_HIER_ALGO",
        "SAGELLM_COMM_HIER_LINKS",
        "SAGELLM_COMM_HIER_RANKS_PER_NODE",
    }
)
DEBUG_VALUES = ("off", "detail", "on", "1", "0", "")
DEVICE_MASKS = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES")
DISABLES = {
    "NCCL_P2P_DISABLE": "GPU-to-GPU copies go through host memory (slower)",
    "NCCL_IB_DISABLE": "InfiniBand/RoCE is not used; inter-node traffic falls back to TCP sockets (much slower)",
    "NCCL_SHM_DISABLE": "intra-node traffic that would use shared memory goes through sockets or P2P",
}
RENAMED = {
    "NCCL_BLOCKING_WAIT": "TORCH_NCCL_BLOCKING_WAIT",
    "NCCL_ASYNC_ERROR_HANDLING": "TORCH_NCCL_ASYNC_ERROR_HANDLING",
}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _truthy(v: str) -> bool:
    return v.strip().lower() in ("1", "true", "yes", "on")


def check_torch_env(ctx: Context) -> list[Finding]:
    env, out = ctx.env, []
    for old, new in RENAMED.items():
        if old in env:
            out.append(
                Finding(
                    CHECK_TORCH,
                    WARN,
                    f"{old}={env[old]!r} is the deprecated name (torch >= 2.2 reads "
                    f"{new}; old names are warned about and will stop working)",
                    f"export {new}={env[old]} and unset {old}",
                )
            )
    for var in ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "NCCL_ASYNC_ERROR_HANDLING"):
        if env.get(var, "").strip() == "0":
            out.append(
                Finding(
                    CHECK_TORCH,
                    WARN,
                    f"{var}=0: a stuck or failed NCCL collective hangs forever instead "
                    "of raising at the timeout (the watchdog does not tear the group down)",
                    f"unset {var} (torch's default aborts the communicator on timeout)",
                )
            )
    for var in ("TORCH_NCCL_BLOCKING_WAIT", "NCCL_BLOCKING_WAIT"):
        if _truthy(env.get(var, "")):
            out.append(
                Finding(
                    CHECK_TORCH,
                    INFO,
                    f"{var}=1: the calling thread waits for every NCCL op and raises "
                    "at the timeout; no overlap of communication with compute (a debugging setting)",
                    f"unset {var} for production runs",
                )
            )
    for var, effect in DISABLES.items():
        if _truthy(env.get(var, "")):
            out.append(
                Finding(
                    CHECK_TORCH,
                    INFO,
                    f"{var}=1: {effect}",
                    f"unset {var} unless it works around a known problem on this machine",
                )
            )
    debug = env.get("NCCL_DEBUG")
    if debug is None:
        out.append(
            Finding(
                CHECK_TORCH,
                INFO,
                "NCCL_DEBUG is unset: NCCL failures show no detail",
                "export NCCL_DEBUG=WARN (INFO with NCCL_DEBUG_SUBSYS=INIT,NET when chasing a hang: it "
                "names the interface and transport NCCL picked)",
            )
        )
    elif debug.strip().upper() in ("INFO", "TRACE"):
        out.append(
            Finding(
                CHECK_TORCH,
                INFO,
                f"NCCL_DEBUG={debug}: verbose logs on every rank (fine for debugging)",
                "export NCCL_DEBUG=WARN for production runs",
            )
        )
    for var in DEVICE_MASKS:
        if var in env and not env[var].strip():
            out.append(
                Finding(
                    CHECK_TORCH,
                    WARN,
                    f"{var} is set but empty: it hides every device, so the GPU/NPU "
                    "backends report none and 'auto' falls back to CPU",
                    f"unset {var}, or list the devices (e.g. 0,1)",
                )
            )
    out += _threads(ctx)
    return out or [Finding(CHECK_TORCH, OK, "no torch/NCCL variable known to cause hangs is set")]


def _threads(ctx: Context) -> list[Finding]:
    raw = ctx.env.get("OMP_NUM_THREADS")
    cores = _cores()
    ranks, source = ctx.ranks_per_host()
    known = source is not None
    if raw is None:
        if known and ranks > 1 and cores > 1:
            return [
                Finding(
                    CHECK_TORCH,
                    WARN,
                    f"OMP_NUM_THREADS is unset with {ranks} ranks per host ({source}): "
                    f"each rank starts {cores} OpenMP threads, {ranks * cores} threads on {cores} cores; "
                    "CPU collectives and reductions slow down",
                    f"export OMP_NUM_THREADS={max(1, cores // ranks)} (torchrun sets 1 when it is unset)",
                )
            ]
        return []
    if not raw.strip().isdigit() or int(raw) < 1:
        return [
            Finding(
                CHECK_TORCH,
                WARN,
                f"OMP_NUM_THREADS={raw!r} is not a positive integer; torch ignores it and uses every core",
                f"export OMP_NUM_THREADS={max(1, cores // max(ranks, 1))}",
            )
        ]
    if known and int(raw) * ranks > 2 * cores:
        return [
            Finding(
                CHECK_TORCH,
                INFO,
                f"OMP_NUM_THREADS={raw} x {ranks} ranks = {int(raw) * ranks} threads on {cores} cores",
                f"export OMP_NUM_THREADS={max(1, cores // ranks)}",
            )
        ]
    return []


def check_sagellm_env(ctx: Context) -> list[Finding]:
    env, out = ctx.env, []
    raw = env.get("SAGELLM_COMM_TIMEOUT_S", "")
    if raw:
        try:
            t = float(raw)
        except ValueError:
            t = None
        if t is None or not t > 0:
            out.append(
                Finding(
                    CHECK_SAGELLM,
                    FAIL,
                    f"SAGELLM_COMM_TIMEOUT_S={raw!r} is not a positive number of "
                    "seconds: init_process_group refuses it",
                    "export SAGELLM_COMM_TIMEOUT_S=120 (or unset it: 120 s)",
                )
            )
        elif t < 10:
            out.append(
                Finding(
                    CHECK_SAGELLM,
                    WARN,
                    f"SAGELLM_COMM_TIMEOUT_S={raw}: the first collectives include "
                    "connection setup and kernel warm-up, and ranks start seconds apart; calls may time "
                    "out spuriously",
                    "export SAGELLM_COMM_TIMEOUT_S=60 or more",
                )
            )
        else:
            out.append(
                Finding(CHECK_SAGELLM, OK, f"SAGELLM_COMM_TIMEOUT_S={raw}: every blocking call gives up after {t:g} s")
            )
    debug = env.get("SAGELLM_COMM_DEBUG")
    if debug is not None:
        if debug.strip().lower() not in DEBUG_VALUES:
            out.append(
                Finding(
                    CHECK_SAGELLM,
                    WARN,
                    f"SAGELLM_COMM_DEBUG={debug!r} is not a value it knows: debug mode stays off",
                    "export SAGELLM_COMM_DEBUG=detail (or unset it)",
                )
            )
        elif debug.strip().lower() in ("detail", "on", "1"):
            out.append(
                Finding(
                    CHECK_SAGELLM,
                    INFO,
                    f"SAGELLM_COMM_DEBUG={debug}: every collective is checked across "
                    "ranks first (a store round trip per call; async ops wait at submission)",
                    "unset SAGELLM_COMM_DEBUG for production runs",
                )
            )
    entries = env.get("SAGELLM_COMM_TRACE_ENTRIES")
    if entries is not None and entries.strip():
        if not entries.strip().isdigit():
            out.append(
                Finding(
                    CHECK_SAGELLM,
                    FAIL,
                    f"SAGELLM_COMM_TRACE_ENTRIES={entries!r} is not a count: creating a backend raises",
                    "export SAGELLM_COMM_TRACE_ENTRIES=512 (0 turns the flight recorder off)",
                )
            )
        elif int(entries) == 0:
            out.append(
                Finding(
                    CHECK_SAGELLM,
                    INFO,
                    "SAGELLM_COMM_TRACE_ENTRIES=0: the flight recorder is off; a timeout leaves no trace to merge",
                    "unset SAGELLM_COMM_TRACE_ENTRIES",
                )
            )
    out += _trace_dir(ctx)
    token = env.get("SAGELLM_COMM_JOB_TOKEN")
    if token:
        out.append(
            Finding(
                CHECK_SAGELLM,
                OK,
                "SAGELLM_COMM_JOB_TOKEN is set (value not shown): ranks join only the rendezvous of their own job",
            )
        )
    else:
        out.append(
            Finding(
                CHECK_SAGELLM,
                INFO,
                "SAGELLM_COMM_JOB_TOKEN is "
                + ("set but empty" if token == "" else "unset")
                + ": two jobs started with the same MASTER_ADDR:MASTER_PORT could meet in one "
                "store (the project's launcher sets one itself)",
                "with torchrun, on every rank: export SAGELLM_COMM_JOB_TOKEN=$(python -c 'import secrets; "
                "print(secrets.token_hex(16))')",
            )
        )
    for var in ("SAGELLM_COMM_PLUGINS", "SAGELLM_COMM_DISABLE_PLUGINS"):
        if var in env:
            out.append(
                Finding(
                    CHECK_SAGELLM,
                    INFO,
                    f"{var}={env[var]!r}: only some plugins load (see 'backends')",
                    f"unset {var} to load every installed plugin",
                )
            )
    for var in sorted(v for v in env if v.startswith("SAGELLM_COMM_") and v not in KNOWN_SAGELLM_VARS):
        near = sorted(k for k in KNOWN_SAGELLM_VARS if k.startswith(var) or var.startswith(k))
        hint = f" (did you mean {near[0]}?)" if near else ""
        out.append(
            Finding(
                CHECK_SAGELLM,
                INFO,
                f"{var} is set but no sagellm-comm package reads it{hint}",
                f"rename it{' to ' + near[0] if near else ''} or unset it",
            )
        )
    return out


def _trace_dir(ctx: Context) -> list[Finding]:
    raw = ctx.env.get("SAGELLM_COMM_TRACE_DIR", "")
    folder = raw or os.path.join(tempfile.gettempdir(), "sagellm-comm-trace")
    probe = folder
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)  # the nearest existing ancestor: the recorder creates the rest
    if os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK):
        return [
            Finding(
                CHECK_SAGELLM,
                OK,
                f"flight-recorder traces go to {folder}"
                + (" (SAGELLM_COMM_TRACE_DIR)" if raw else " (default; SAGELLM_COMM_TRACE_DIR unset)"),
            )
        ]
    return [
        Finding(
            CHECK_SAGELLM,
            WARN if raw else INFO,
            f"flight-recorder traces cannot be written to {folder} "
            f"({probe} is not a writable directory): a timeout's trace is lost",
            "export SAGELLM_COMM_TRACE_DIR=<a writable directory, shared by the ranks if you can>",
        )
    ]
