"""The repository's benchmark entry points: ``python -m benchmark.run_bench`` (collective sweeps, same options
as ``sagellm-comm bench``) and ``python -m benchmark.compare`` (ours vs raw torch.distributed Gloo, the table
behind the project's performance claims). The measuring code lives in ``sagellm_comm.benchmark``."""
