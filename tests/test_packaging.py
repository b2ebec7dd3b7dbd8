"""What a wheel of genrec ships: type information (``py.typed``, PEP 561) and the YAML defaults every
dataset and model reads, so that an installed genrec (not only this checkout) configures and type-checks."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_type_information_and_every_config_file(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ and egg-info next to the sources
    shutil.copytree(ROOT / "genrec", source / "genrec", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("genrec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "genrec/py.typed" in names
    configs = {str(p.relative_to(ROOT)) for p in (ROOT / "genrec").rglob("*.yaml")}
    assert configs and configs <= names
