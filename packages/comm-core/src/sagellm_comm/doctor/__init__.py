"""``sagellm-comm doctor``: checks of the local setup, each a small function returning findings with fixes.

Every check takes a :class:`Context` (environment, job size, where procfs/sysfs are) and returns
:class:`Finding` objects: ``ok`` / ``info`` / ``warn`` / ``fail``, what was found, and the command or setting that
fixes it. ``run_checks`` runs them in order and turns a check that raises into a finding of its own, so a missing
``/proc`` file or an odd platform never stops the others. Only ``fail`` makes the command exit 1.
"""

from __future__ import annotations

from collections.abc import Iterable

from sagellm_comm.doctor.backends import check_backends
from sagellm_comm.doctor.env import check_sagellm_env, check_torch_env
from sagellm_comm.doctor.findings import FAIL, INFO, LEVELS, OK, WARN, Check, Context, Finding
from sagellm_comm.doctor.limits import check_memlock, check_open_files
from sagellm_comm.doctor.network import check_hostname, check_interfaces, check_socket_ifname
from sagellm_comm.doctor.ports import check_master_addr, check_master_port
from sagellm_comm.doctor.shm import check_shm, check_shm_leftovers

__all__ = ["CHECKS", "FAIL", "INFO", "LEVELS", "OK", "WARN", "Context", "Finding", "counts", "exit_code", "run_checks"]

# name -> (check, what it looks at); the name is also each finding's ``check``
CHECKS: dict[str, tuple[Check, str]] = {
    "shm": (check_shm, "/dev/shm (SAGELLM_COMM_SHM_DIR): exists, writable, tmpfs, free space for a group"),
    "shm-leftovers": (check_shm_leftovers, "sagellm-comm-* region files crashed jobs left, and their modes"),
    "open-files": (check_open_files, "RLIMIT_NOFILE soft/hard"),
    "memlock": (check_memlock, "RLIMIT_MEMLOCK when RDMA devices exist"),
    "interfaces": (check_interfaces, "network interfaces that are up, with their addresses"),
    "socket-ifname": (check_socket_ifname, "GLOO/NCCL/TP/HCCL_SOCKET_IFNAME name interfaces that are up"),
    "hostname": (check_hostname, "this host's name resolves to an address of this host"),
    "master-addr": (check_master_addr, "MASTER_ADDR resolves; this host or another"),
    "master-port": (check_master_port, "MASTER_PORT free where rank 0 listens; outside the ephemeral range"),
    "torch-env": (check_torch_env, "torch/NCCL/OpenMP/device-mask variables known to cause hangs or confusion"),
    "sagellm-env": (check_sagellm_env, "SAGELLM_COMM_* values, the job token (never shown), unknown names"),
    "backends": (check_backends, "plugins that loaded or failed, backends that can run here"),
}


def run_checks(ctx: Context | None = None, only: Iterable[str] | None = None) -> list[Finding]:
    ctx = ctx or Context()
    names = list(CHECKS) if only is None else list(only)
    out: list[Finding] = []
    for name in names:
        check, _ = CHECKS[name]
        try:
            found = list(check(ctx))
        except Exception as exc:  # a check's own error is a finding; the other checks still run
            found = [
                Finding(
                    name,
                    WARN,
                    f"the check could not run: {type(exc).__name__}: {exc}",
                    "report it with the output of 'sagellm-comm info'",
                )
            ]
        out += found or [Finding(name, OK, "nothing to report")]
    return out


def counts(findings: Iterable[Finding]) -> dict[str, int]:
    c = dict.fromkeys(LEVELS, 0)
    for f in findings:
        c[f.level] += 1
    return c


def exit_code(findings: Iterable[Finding]) -> int:
    return 1 if any(f.level == FAIL for f in findings) else 0
