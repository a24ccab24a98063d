"""The service's settings, and the checks that refuse an unsafe start."""
from __future__ import annotations

import ipaddress
import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .deliver import Destination, Policy

TOKEN_ENV = "SYSDIAG_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16


class ConfigError(ValueError):
    """The service cannot start as configured; the message says what to change."""


@dataclass
class ServeConfig:
    listen: str = "127.0.0.1"
    port: int = 9464
    token: Optional[str] = None  # None only with insecure_no_auth
    insecure_no_auth: bool = False
    #: sampling window of each diagnosis (None: the playbook's) and its hard deadline
    window_s: Optional[float] = None
    deadline_s: float = 20.0
    #: a firing alert seen again within this many seconds reuses its diagnosis
    reuse_window_s: float = 600.0
    queue_size: int = 16
    workers: int = 1
    max_body_bytes: int = 256 * 1024
    alertmap: Optional[Path] = None
    rules_dirs: list[Path] = field(default_factory=list)
    destinations: list[Destination] = field(default_factory=list)
    delivery: Policy = field(default_factory=Policy)
    audit_log: Optional[Path] = None
    state_dir: Optional[Path] = None
    keep: int = 500
    public_url: Optional[str] = None
    #: names the `instance` label may carry for this host (besides its own names)
    instances: list[str] = field(default_factory=list)
    any_instance: bool = False

    def check(self) -> None:
        loopback = _is_loopback(self.listen)
        if self.token is None and not self.insecure_no_auth:
            raise ConfigError(f"no bearer token: put one in a file and give --token-file FILE, "
                              f"or set {TOKEN_ENV} (e.g. `openssl rand -hex 32`)")
        if self.insecure_no_auth and not loopback:
            raise ConfigError(f"--insecure-no-auth is allowed only on a loopback address, not "
                              f"on --listen {self.listen}")
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"the bearer token has {len(self.token)} characters; use at least "
                              f"{MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`)")
        if not 1 <= self.workers <= 4:
            raise ConfigError("--workers: 1 to 4 (each diagnosis samples the host; parallel "
                              "ones distort each other)")

    def host_names(self) -> set[str]:
        """Values of the `instance` label (without port) that mean this host."""
        names = {"localhost", "127.0.0.1", "::1", socket.gethostname()}
        names.add(socket.gethostname().split(".")[0])
        try:
            import psutil

            for addrs in psutil.net_if_addrs().values():
                names.update(a.address.split("%")[0] for a in addrs
                             if a.family in (socket.AF_INET, socket.AF_INET6))
        except OSError as err:  # names from the interfaces are a convenience
            raise ConfigError(f"cannot list this host's addresses ({err}); give --instance "
                              "NAME for each name the instance label uses") from err
        names.update(self.instances)
        return {n.lower() for n in names}


def read_token(path: Optional[Path]) -> Optional[str]:
    """The token from --token-file, else from $SYSDIAG_SERVE_TOKEN, else None."""
    if path is not None:
        try:
            info = os.stat(path)
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"--token-file {path}: {err.strerror}") from err
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"--token-file {path}: readable by group or others; "
                              f"`chmod 600 {path}`")
        if not token:
            raise ConfigError(f"--token-file {path}: empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
