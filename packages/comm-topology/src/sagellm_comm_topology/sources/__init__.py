"""Discovery sources: each reads one part of the system below a :class:`~sagellm_comm_topology.sysroot.SysRoot`.

Every source raises :class:`SourceMissing` with a reason when what it reads is not there; ``discover_host`` turns
that (and any other exception) into a :class:`~sagellm_comm_topology.model.SourceStatus`, never an error.
"""


class SourceMissing(Exception):
    """The source has nothing to read here; the message says why (recorded, not raised to the caller)."""
