"""No package deserializes bytes received from the network with pickle (docs/reliability.md, "Safe rendezvous").

The side channel carries plain bytes, P2P headers are fixed binary structs, and there are no object collectives.
``pickle`` is allowed only in the launcher (``sagellm_comm/launch/``), between a parent and the child processes it
spawned, over their private pipes. This scans every package's source for the calls that would break that.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# call names that turn bytes into arbitrary objects
UNSAFE = {
    "loads",
    "load",
    "Unpickler",
    "broadcast_object_list",
    "all_gather_object",
    "gather_object",
    "scatter_object_list",
    "recv_object_list",
    "send_object_list",
    "broadcast_object",
}
UNSAFE_MODULES = {"pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve", "torch", "dist", "distributed"}


def _unsafe_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(
                (n or "").split(".")[0] in {"pickle", "cPickle", "cloudpickle", "dill", "marshal", "shelve"}
                for n in names
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {', '.join(n for n in names if n)}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in UNSAFE:
            base = node.func.value
            name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            if name in UNSAFE_MODULES or node.func.attr.endswith(("_object", "_object_list")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}.{node.func.attr}")
    return found


def test_only_the_launcher_unpickles():
    sources = sorted(ROOT.glob("packages/*/src/**/*.py"))
    assert len(sources) > 50
    found = [hit for p in sources for hit in _unsafe_calls(p)]
    allowed = [hit for hit in found if "sagellm_comm/launch/" in hit]
    assert allowed, "the scan finds the launcher's own pickle use (else it finds nothing at all)"
    assert [hit for hit in found if hit not in allowed] == []
