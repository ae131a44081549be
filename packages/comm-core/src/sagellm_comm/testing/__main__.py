"""``python -m sagellm_comm.testing NAME [pytest args...]``: run the conformance suite against backend NAME."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: python -m sagellm_comm.testing BACKEND [--comm-world-sizes 1,2,4] [pytest options]",
              file=sys.stderr)
        return 2
    import pytest

    suite = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_installed_backend.py")
    return int(pytest.main([suite, "--comm-backend", args[0], "-p", "no:cacheprovider", *args[1:]]))


if __name__ == "__main__":
    sys.exit(main())
