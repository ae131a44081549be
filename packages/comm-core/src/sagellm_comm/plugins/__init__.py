"""Plugin API: hook markers, the hook specs, the manager that loads entry points in isolation, and the plugin API
version this core speaks (``PLUGIN_API_VERSION``; a plugin's entry module declares ``SAGELLM_COMM_PLUGIN_API``)."""

from sagellm_comm.plugins.hookspecs import hookimpl, hookspec
from sagellm_comm.plugins.manager import (
    API_ATTRIBUTE,
    ENTRY_POINT_GROUP,
    PLUGIN_API_VERSION,
    PluginRecord,
    SagellmPluginManager,
    plugin_api_problem,
)

__all__ = [
    "API_ATTRIBUTE",
    "ENTRY_POINT_GROUP",
    "PLUGIN_API_VERSION",
    "PluginRecord",
    "SagellmPluginManager",
    "hookimpl",
    "hookspec",
    "plugin_api_problem",
]
