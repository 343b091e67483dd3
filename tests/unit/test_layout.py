"""The repository's layout: production code (``dags/``, ``plugins/``, ``include/``) stands on its own,
tooling (``sandbox/``, ``bench/``, ``tests/``) sits beside it, and the two locks say so.

The runtime lock (``requirements.txt``) is what the production image installs; the dev lock
(``requirements-dev.txt``) adds tests, simulators and linters and pins every runtime package at the
runtime version, so a test run exercises exactly the versions production runs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("dags", "plugins", "include")
TOOLING = {"sandbox", "tests", "bench"}
#: Production modules stay readable in one sitting; simulators and tests are not held to it.
MAX_MODULE_LINES = 470
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", re.MULTILINE)


def production_modules() -> list[Path]:
    return sorted(path for top in PRODUCTION for path in (REPO_ROOT / top).rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    """The top-level package of every module ``path`` imports (absolute imports only)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def pins(lock: str) -> dict[str, str]:
    text = (REPO_ROOT / lock).read_text()
    return {_normalized(name): version for name, version in _PIN.findall(text)}


def direct_requirements(spec: str) -> set[str]:
    """The package names a ``.in`` file asks for itself (not its ``-r`` / ``-c`` includes)."""
    names = set()
    for line in (REPO_ROOT / spec).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(_normalized(re.split(r"[\[<>=!~; ]", line)[0]))
    return names


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_production_code_imports_no_tooling():
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(imported_roots(path) & TOOLING)
        for path in production_modules()
        if imported_roots(path) & TOOLING
    }
    assert offenders == {}


def test_the_check_sees_an_import_of_the_sandbox(tmp_path):
    module = tmp_path / "module.py"
    module.write_text("import os\nfrom sandbox.simulators.callio import CallioSimulator\n")
    assert imported_roots(module) & TOOLING == {"sandbox"}


def test_include_holds_no_simulator_or_tooling_package():
    assert not (REPO_ROOT / "include" / "sandbox").exists()
    assert (REPO_ROOT / "sandbox" / "simulators").is_dir() and (REPO_ROOT / "sandbox" / "worlds").is_dir()


def test_the_dev_lock_pins_every_runtime_package_at_the_runtime_version():
    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    assert runtime and dev
    missing = sorted(set(runtime) - set(dev))
    disagree = {
        name: (version, dev[name]) for name, version in runtime.items() if dev.get(name, version) != version
    }
    assert missing == [] and disagree == {}


def test_no_tool_is_in_the_runtime_lock():
    tools = direct_requirements("requirements-dev.in")
    assert {"pytest", "ruff", "moto", "schemathesis"} <= tools
    assert sorted(tools & set(pins("requirements.txt"))) == []
    assert direct_requirements("requirements.in") <= set(pins("requirements.txt"))


def dockerfile_stages() -> dict[str, list[str]]:
    """The Dockerfile's instructions per stage (continuation lines joined); the last stage is ``""``."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / "Dockerfile").read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            match = re.search(r"\bAS\s+(\S+)", line, re.IGNORECASE)
            current = stages.setdefault(match.group(1) if match else "", [])
        current.append(line)
    return stages


def test_the_production_image_installs_the_runtime_lock_and_no_tooling():
    stages = dockerfile_stages()
    final = stages[""]
    assert final == ["FROM runtime"], "the production image is the runtime stage as it stands"
    runtime = " ".join(stages["runtime"])
    assert "requirements.txt" in runtime and "requirements-dev" not in runtime
    for tool in TOOLING:
        assert f"{tool}/" not in runtime, f"{tool}/ is copied into the production image"
    sandbox = " ".join(stages["sandbox"])
    assert "requirements-dev.txt" in sandbox and "sandbox/" in sandbox


@pytest.mark.parametrize("path", production_modules(), ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_production_modules_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines: split it by responsibility"
