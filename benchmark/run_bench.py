"""``python -m benchmark.run_bench`` / ``torchrun --nproc_per_node=N -m benchmark.run_bench``: the collective
benchmark (``sagellm-comm bench`` under the seed's name). Standalone it launches ``--nproc`` local ranks (default
2); under torchrun this process is one rank. See ``--help`` and docs/benchmark.md."""

from __future__ import annotations

import sys

from sagellm_comm.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m benchmark.run_bench"))
