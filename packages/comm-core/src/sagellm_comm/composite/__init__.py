"""``hier``: a composite backend for ranks on several hosts, built from two installed backends.

Inside a host the ranks talk through the best node-local transport installed (shared memory now; whatever backend
has the highest priority for the device); between hosts through the best cross-host one (gloo now). Collectives on
a group spread over hosts run in two levels (:mod:`sagellm_comm.algorithms.hierarchical`) when the cost model,
fed with link parameters measured at init, predicts that to be faster than the cross-host backend's own flat
collective; every decision is explained (``HierBackend.explain``). ``get_comm_backend("auto")`` returns it when
the launcher's environment says the ranks span several hosts (WORLD_SIZE != LOCAL_WORLD_SIZE).

It lives in the core, not in a plugin package: it has no engine of its own, it composes whatever backends the
registry holds (by their declared ``scope`` and priority, never by name), and ``auto`` must find it in every
install that can span hosts. docs/hierarchical.md has the design.
"""
