"""Process limits: open files (gloo, NCCL and torch's store open sockets per peer) and locked memory (RDMA)."""

from __future__ import annotations

import os

from sagellm_comm.doctor.findings import INFO, OK, WARN, Context, Finding, fmt_bytes

__all__ = ["MIN_NOFILE", "RECOMMENDED_NOFILE", "check_memlock", "check_open_files"]

MIN_NOFILE = 4096
RECOMMENDED_NOFILE = 65536
CHECK_NOFILE = "open-files"
CHECK_MEMLOCK = "memlock"


def _show(n: int, infinity: int) -> str:
    return "unlimited" if n == infinity else str(n)


def check_open_files(ctx: Context) -> list[Finding]:
    try:
        import resource
    except ImportError:
        return [Finding(CHECK_NOFILE, INFO, "no resource module on this platform: open-files limit not checked")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    shown = f"open-files limit: soft {_show(soft, inf)}, hard {_show(hard, inf)}"
    if soft == inf or soft >= MIN_NOFILE:
        return [Finding(CHECK_NOFILE, OK, shown)]
    why = (
        f"{shown}; below {MIN_NOFILE}, large jobs fail with 'Too many open files' (gloo opens sockets per peer "
        "pair, NCCL per channel, torch's store one per rank, plus every mapped file and pipe)"
    )
    if hard == inf or hard >= MIN_NOFILE:
        target = RECOMMENDED_NOFILE if hard == inf else min(hard, RECOMMENDED_NOFILE)
        return [
            Finding(
                CHECK_NOFILE,
                WARN,
                why,
                f"ulimit -n {target} in the shell or script that starts the job (the hard limit allows it)",
            )
        ]
    return [
        Finding(
            CHECK_NOFILE,
            WARN,
            why + f"; the hard limit {hard} stops 'ulimit -n' from raising it",
            f"raise the hard limit: docker run --ulimit nofile={RECOMMENDED_NOFILE}:{RECOMMENDED_NOFILE}; "
            f"systemd: LimitNOFILE={RECOMMENDED_NOFILE}; /etc/security/limits.conf: "
            f"'* hard nofile {RECOMMENDED_NOFILE}'",
        )
    ]


def check_memlock(ctx: Context) -> list[Finding]:
    ib = os.path.join(ctx.sys, "class", "infiniband")
    try:
        devices = sorted(os.listdir(ib))
    except OSError:
        devices = []
    if not devices:
        return [Finding(CHECK_MEMLOCK, OK, "no RDMA devices: the locked-memory limit does not matter here")]
    try:
        import resource
    except ImportError:
        return [Finding(CHECK_MEMLOCK, INFO, "no resource module on this platform: memlock limit not checked")]
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    inf = resource.RLIM_INFINITY
    shown = f"RDMA devices {', '.join(devices)}; locked-memory limit soft {_show(soft, inf)}"
    if soft == inf:
        return [Finding(CHECK_MEMLOCK, OK, shown)]
    return [
        Finding(
            CHECK_MEMLOCK,
            WARN,
            f"{shown} ({fmt_bytes(soft)}): NCCL/UCX register buffers with the NIC and "
            "fail ('ibv_reg_mr failed', 'Cannot allocate memory') when they cannot lock them",
            "ulimit -l unlimited"
            if hard == inf
            else "docker run --ulimit memlock=-1; systemd: LimitMEMLOCK=infinity; /etc/security/limits.conf: "
            "'* hard memlock unlimited'",
        )
    ]
