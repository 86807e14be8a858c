"""Check that the built wheel ships templates, migrations and py.typed, then that
it installs into a fresh virtualenv and imports."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def required() -> list[str]:
    """Every migration and template of the source tree, and the typing marker."""
    package = ROOT / "kinwise_auth"
    files = [package / "py.typed", *package.glob("migrations/*.py")]
    files += [p for p in (package / "templates").rglob("*") if p.is_file()]
    return sorted(str(p.relative_to(ROOT)) for p in files)


def main(dist: Path) -> int:
    (wheel,) = dist.glob("kinwise_auth-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in required() if name not in names]
    if missing:
        print(f"{wheel.name} lacks: {missing}")
        return 1
    if any(name.startswith(("tests/", "example_project/")) for name in names):
        print(f"{wheel.name} ships test or example code")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        venv.create(tmp, with_pip=True)
        python = Path(tmp) / "bin" / "python"
        subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True)
        subprocess.run(
            [python, "-c", "import kinwise_auth; print(kinwise_auth.__version__)"],
            check=True,
        )
    print(f"{wheel.name}: {len(names)} files, templates and migrations included")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
