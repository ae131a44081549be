"""Plugin API: hook markers, the hook specs, and the manager that loads entry points in isolation."""

from sagellm_comm.plugins.hookspecs import hookimpl, hookspec
from sagellm_comm.plugins.manager import ENTRY_POINT_GROUP, PluginRecord, SagellmPluginManager

__all__ = ["ENTRY_POINT_GROUP", "PluginRecord", "SagellmPluginManager", "hookimpl", "hookspec"]
