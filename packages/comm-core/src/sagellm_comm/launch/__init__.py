"""Local launcher: run a function on N local ranks without torchrun.

``launch(fn, world_size)`` spawns the ranks, runs ``fn(*args)`` on each and returns the results in rank order;
``RankPool`` keeps the ranks alive across many calls (as PyTorch's MultiProcContinuousTest does), which is what
tests and benchmarks use. Each rank sees the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT), so ``init_process_group()`` with no arguments works inside it.

When a rank raises, every rank is stopped and ``RankFailedError`` carries that rank's traceback; when the deadline
passes, ``RankDeadlineError`` names the ranks that had not finished and shows where each one was stuck.
"""

from sagellm_comm.launch.errors import RankDeadlineError, RankFailedError
from sagellm_comm.launch.pool import RankPool, launch
from sagellm_comm.launch.ports import free_port

__all__ = ["RankDeadlineError", "RankFailedError", "RankPool", "free_port", "launch"]
