"""What `pip install .` puts on a user's path: `orthrus_sglang` and the gateway as `orthrus_server`
(its sources stay in server/), every subpackage of both, the demo view, and no top-level `server`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _source_packages() -> set[str]:
    found = set()
    for top, name in (("orthrus_sglang", "orthrus_sglang"), ("server", "orthrus_server")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    return found


def test_pyproject_lists_every_package_folder():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(tool["packages"]) == _source_packages()
    assert tool["package-dir"] == {"orthrus_server": "server"}


def test_wheel_installs_the_gateway_as_orthrus_server(tmp_path):
    src = tmp_path / "src"  # a clean copy: setuptools would reuse a stale build/ in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("orthrus_sglang", "server"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
                   check=True, capture_output=True, text=True)
    (wheel,) = tmp_path.glob("orthrus_sglang-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"orthrus_sglang", "orthrus_server"}
    for package in _source_packages():
        assert package.replace(".", "/") + "/__init__.py" in names, package
    assert "orthrus_server/__main__.py" in names  # python -m orthrus_server
    assert any(n.startswith("orthrus_sglang/views/") and n.endswith(".safetensors") for n in names)
    from orthrus_sglang.train.corpus import IN_DISTRIBUTION, OUT_OF_DISTRIBUTION

    for source in (*IN_DISTRIBUTION, *OUT_OF_DISTRIBUTION):  # the trainer's prompts travel with the package
        assert f"orthrus_sglang/train/corpus/{source}.jsonl.gz" in names, source
