"""Adapters to existing communication engines that several plugins share (torch.distributed today).

They name engines (torch.distributed's own backend strings), never plugins: a plugin subclasses an adapter and
declares its name and capabilities, as vLLM's device communicators each wrap one platform.
"""
