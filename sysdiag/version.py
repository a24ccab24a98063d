"""sysdiag's version and the Python versions it runs on."""
from __future__ import annotations

import sys
from importlib import metadata
from typing import Optional, Sequence


def _version() -> str:
    try:
        return metadata.version("sysdiag")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0+unknown"


__version__ = _version()

#: durable-rules 2.0.28 (the newest release) does not import on 3.13+:
#: its C extension calls PyEval_CallObject, which 3.13 removed (ENGINE-NOTES §9).
MAX_PYTHON = (3, 12)


def python_problem(version_info: Optional[Sequence[int]] = None) -> Optional[str]:
    """One line explaining why this Python cannot run sysdiag, or None if it can."""
    major_minor = tuple((version_info or sys.version_info)[:2])
    if major_minor > MAX_PYTHON:
        return (f"sysdiag needs Python 3.10-3.12, this is {major_minor[0]}.{major_minor[1]}: "
                "durable-rules 2.0.28 (its rule engine) does not import on 3.13+; "
                "recreate the venv with python3.12 or older (make install)")
    if major_minor < (3, 10):
        return (f"sysdiag needs Python 3.10-3.12, this is {major_minor[0]}.{major_minor[1]}; "
                "recreate the venv with python3.10, 3.11 or 3.12")
    return None
