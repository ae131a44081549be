"""Where the topology tests' recorded trees and expected models live (a module of its own: ``conftest`` is a name
every test folder has)."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPECTED = Path(__file__).resolve().parent / "expected"
