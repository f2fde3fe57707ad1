"""The Quix Streams peer's virtual environment: ``benchmarks/.venv-quix`` (git-ignored).

Quix Streams pins an older confluent-kafka than the project's, so it cannot share the
project's venv. :func:`ensure_quix_env` builds its own from ``requirements-quix.txt`` with
``python -m venv`` and pip (PyPI), once, and again whenever that file changes (a stamp in the
venv holds the file's sha256). The peer imports ``huracan`` and ``benchmarks`` from the
source tree (:func:`peer_environ` puts the repository on ``PYTHONPATH``), so the project is
not installed there and its own dependencies never meet Quix Streams' pins.

``python -m benchmarks.peers.env`` (``make bench-peers-env``) builds it and prints its python.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / "benchmarks" / ".venv-quix"
REQUIREMENTS = Path(__file__).resolve().with_name("requirements-quix.txt")
STAMP_NAME = ".requirements-sha256"


def requirements_digest(text: str) -> str:
    """The stamp of a requirements file's text (comments and blank lines count too)."""
    return hashlib.sha256(text.encode()).hexdigest()


def quix_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def is_current(venv: Path = VENV, requirements: Path = REQUIREMENTS) -> bool:
    """Whether ``venv`` exists and was built from ``requirements`` as it is now."""
    stamp = venv / STAMP_NAME
    if not quix_python(venv).exists() or not stamp.exists():
        return False
    return stamp.read_text().strip() == requirements_digest(requirements.read_text())


def base_python() -> str:
    """The interpreter to build the venv with: the one under the current venv, if any."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def ensure_quix_env(venv: Path = VENV, requirements: Path = REQUIREMENTS) -> Path:
    """Build (or rebuild) ``venv`` from ``requirements`` unless it is current; its python.

    Raises ``subprocess.CalledProcessError`` when venv or pip fails (no registry, say)."""
    if is_current(venv, requirements):
        return quix_python(venv)
    print(f"  building the Quix Streams venv {venv} from {requirements.name} …", flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([base_python(), "-m", "venv", str(venv)], check=True)  # noqa: S603
    pip = [str(quix_python(venv)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)  # noqa: S603
    (venv / STAMP_NAME).write_text(requirements_digest(requirements.read_text()) + "\n")
    return quix_python(venv)


def peer_environ(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a peer process: ``base`` (default: ours) with the repository first
    on ``PYTHONPATH``, so ``huracan`` and ``benchmarks`` import from the source tree."""
    env = dict(os.environ if base is None else base)
    rest = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + rest if rest else "")
    return env


def installed_versions(python: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """``{package: version}`` as installed for ``python`` (missing ones left out)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(  # noqa: S603 - one of our own interpreters
        [str(python), "-c", code, *packages], capture_output=True, text=True, check=True
    )
    versions: dict[str, str] = json.loads(done.stdout)
    return versions


if __name__ == "__main__":
    print(ensure_quix_env())
