"""The conformance kit: the shared suite every backend plugin passes, importable by vendors.

``BackendConformance`` is the suite (subclass it and set ``backend``); ``python -m sagellm_comm.testing NAME``
runs it against an installed backend with no test file of your own.
"""

from sagellm_comm.testing.suite import BackendConformance

__all__ = ["BackendConformance"]
