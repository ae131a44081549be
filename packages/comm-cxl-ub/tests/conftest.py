"""comm-cxl-ub's tests: a stand-in for CXL memory.

The ``cxl`` backend needs CXL memory given by a path. This machine has none, so unless SAGELLM_COMM_CXL_PATH is
already set, a directory on tmpfs (/dev/shm) stands in for a CXL-backed mount for the whole session; rank
processes inherit the variable. It is set at import time, before any rank pool starts.
"""

import os
import shutil
import tempfile

_CXL_STAND_IN = None
if not os.environ.get("SAGELLM_COMM_CXL_PATH") and os.path.isdir("/dev/shm"):
    _CXL_STAND_IN = tempfile.mkdtemp(prefix="sagellm-cxl-standin-", dir="/dev/shm")
    os.environ["SAGELLM_COMM_CXL_PATH"] = _CXL_STAND_IN


def pytest_unconfigure(config):
    if _CXL_STAND_IN:
        shutil.rmtree(_CXL_STAND_IN, ignore_errors=True)
