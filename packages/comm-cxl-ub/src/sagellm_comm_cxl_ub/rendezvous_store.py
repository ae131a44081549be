"""The key-value store ranks use to agree on a region's name: torch.distributed's, never a home-made one.

- the default process group already exists (the app, or the gloo backend, initialized it): its store;
- ``init_method`` given, or torchrun's agent hosts the store (``TORCHELASTIC_USE_AGENT_STORE``): ``dist.rendezvous``;
- otherwise a ``TCPStore`` on MASTER_ADDR:MASTER_PORT hosted by rank 0, ``multi_tenant`` so that a torch
  process group initialized later in the same process shares the same server instead of failing to bind the port.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch.distributed as dist

from sagellm_comm.rendezvous import Rendezvous

__all__ = ["open_store"]


def open_store(rdzv: Rendezvous, namespace: str) -> Any:
    timeout = datetime.timedelta(seconds=rdzv.timeout_s)
    if dist.is_available() and dist.is_initialized():
        store = dist.distributed_c10d._get_default_store()
    elif rdzv.init_method or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        url = rdzv.init_method or "env://"
        store, _, _ = next(dist.rendezvous(url, rank=rdzv.rank, world_size=rdzv.world_size, timeout=timeout))
    else:
        store = dist.TCPStore(rdzv.master_addr, rdzv.master_port, rdzv.world_size, is_master=rdzv.rank == 0,
                              timeout=timeout, wait_for_workers=False, multi_tenant=True)
    return dist.PrefixStore(namespace, store)
