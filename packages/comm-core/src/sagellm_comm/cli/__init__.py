"""The ``sagellm-comm`` command line (``sagellm_comm.cli.main:main``): ``info`` (versions, plugins, backends)
and ``bench`` (all_reduce sweep against raw torch.distributed)."""
