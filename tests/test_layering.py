"""The layering of DESIGN.md holds: import-linter's contracts in pyproject.toml."""

import shutil
import subprocess

from tests.conftest import REPO


def test_import_contracts_are_kept():
    linter = shutil.which("lint-imports")
    assert linter, "import-linter is not installed: pip install -e '.[test]'"
    result = subprocess.run(
        [linter, "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
