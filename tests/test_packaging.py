"""Every Python package in the mapped top-level folders is installed under `sysdiag.*`."""
from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _declared() -> tuple[set[str], dict[str, str]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"]), config["package-dir"]


def test_every_package_folder_is_listed():
    packages, mapping = _declared()
    found = set()
    for name, folder in mapping.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    missing = found - packages
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_no_generic_top_level_names_installed():
    import sysdiag.engine
    import sysdiag.facts
    import sysdiag.probes

    for module in (sysdiag.engine, sysdiag.facts, sysdiag.probes):
        assert module.__name__.startswith("sysdiag.")
    import importlib.util

    for generic in ("engine", "facts", "probes", "rules", "playbooks"):
        spec = importlib.util.find_spec(generic)
        assert spec is None or "site-packages" not in (spec.origin or ""), generic
