"""Settings: the YAML config file, overridden by command-line flags."""

from __future__ import annotations

import dataclasses
import os
import socket
import uuid
from typing import Any, Dict, List, Optional

import yaml

from framework.options import did_you_mean

DEFAULT_MAX_BODY = 7 * 1024 * 1024
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class ConfigError(ValueError):
    pass


def _default_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open(SA_NAMESPACE_FILE, encoding="utf-8") as f:
            return f.read().strip() or "default"
    except OSError:
        return "default"


@dataclasses.dataclass
class Config:
    # Plugins: None enables every installed plugin.
    enabled_plugins: Optional[List[str]] = None
    plugin_options: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)
    # API server access: None means in-cluster, else the usual kubeconfig discovery.
    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    # Serving.
    bind_address: str = "0.0.0.0"
    port: int = 8443
    tls_cert_file: Optional[str] = None
    tls_private_key_file: Optional[str] = None
    insecure_http: bool = False
    threads: int = 8
    # Serving processes on the one port (framework/web/workers.py).
    workers: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY
    # A request (or TLS handshake) must arrive whole this long after its first byte (slowloris).
    request_timeout_seconds: float = 10.0
    # Keep-alive connections idle this long are closed (above the API server's 90 s idle timeout).
    idle_timeout_seconds: int = 120
    # One deadline per admission request, over all its mutators: inside the webhook's
    # timeoutSeconds (5 in deploy/), and inside the timeout the API server sends with each call.
    admission_deadline_seconds: float = 4.0
    # Within it, what one mutator may take unless it declares its own budget_seconds.
    mutator_budget_seconds: float = 2.0
    cert_reload_interval: float = 5.0
    # On SIGTERM: fail readiness and keep answering this long (while the endpoint's removal
    # reaches the API server), then stop accepting and finish within shutdown_grace_seconds.
    shutdown_delay_seconds: float = 5.0
    shutdown_grace_seconds: float = 15.0
    # Controllers run on the replica holding this Lease.
    leader_election: bool = True
    lease_namespace: str = dataclasses.field(default_factory=_default_namespace)
    lease_name: str = "admission-host"
    identity: str = dataclasses.field(default_factory=lambda: f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}")
    watch_timeout_seconds: int = 300
    log_level: Optional[str] = None
    log_format: str = "text"
    # Serving certificate kept in a Secret of the host's namespace (lease_namespace) instead of
    # files: see framework/certs.py. Unset: --tls-cert-file/--tls-private-key-file are used.
    cert_secret: Optional[str] = None
    cert_dir: str = "/run/admission-host/tls"
    service_name: str = "admission-host"
    webhook_configuration: Optional[str] = None
    cert_validity: float = 365 * 86400.0
    cert_extra_sans: List[str] = dataclasses.field(default_factory=list)

    def options_for(self, plugin: str) -> Dict[str, Any]:
        return dict(self.plugin_options.get(plugin) or {})


FILE_KEYS = {
    "enabledPlugins": "enabled_plugins",
    "plugins": "plugin_options",
    "bindAddress": "bind_address",
    "port": "port",
    "threads": "threads",
    "workers": "workers",
    "maxBodyBytes": "max_body_bytes",
    "admissionDeadlineSeconds": "admission_deadline_seconds",
    "mutatorTimeoutSeconds": "admission_deadline_seconds",  # its name before the deadline was per request
    "mutatorBudgetSeconds": "mutator_budget_seconds",
    "leaderElection": None,
    "logLevel": "log_level",
    "logFormat": "log_format",
}

# Scalar keys are checked here: a string where a number belongs would fail much later, per request.
FILE_TYPES = {"bindAddress": str, "port": int, "threads": int, "workers": (int, str), "maxBodyBytes": int, "logLevel": str,
              "logFormat": str, "admissionDeadlineSeconds": (int, float),
              "mutatorTimeoutSeconds": (int, float), "mutatorBudgetSeconds": (int, float)}
FILE_TYPE_NAMES = {str: "a string", int: "an integer", (int, float): "a number", (int, str): "a number or auto"}


def load_file(path: Optional[str], config: Optional[Config] = None) -> Config:
    """Read the YAML config file into ``config`` (a new one if not given)."""
    config = config or Config()
    if not path:
        return config
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    return load_mapping(data, config, source=f"config file {path}")


def load_mapping(data: Any, config: Optional[Config] = None, source: str = "config") -> Config:
    """The config file's keys, as parsed from YAML, into ``config`` (a new one if not given);
    errors start with ``source``."""
    config = config or Config()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    data = dict(data)  # the caller's, when not from a file: workers is rewritten below
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(k + did_you_mean(k, FILE_KEYS) for k in unknown)}; "
                          f"known: {', '.join(sorted(FILE_KEYS))}")
    plugins = data.get("plugins") or {}
    if not isinstance(plugins, dict) or not all(isinstance(v, dict) or v is None for v in plugins.values()):
        raise ConfigError(f"{source}: 'plugins' must map plugin names to option mappings")
    enabled = data.get("enabledPlugins")
    if enabled is not None and (not isinstance(enabled, list) or not all(isinstance(n, str) for n in enabled)):
        raise ConfigError(f"{source}: 'enabledPlugins' must be a list of plugin names")
    for key, kinds in FILE_TYPES.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise ConfigError(f"{source}: {key!r} must be {FILE_TYPE_NAMES[kinds]}, got {value!r}")
    if data.get("mutatorBudgetSeconds") is not None and not data["mutatorBudgetSeconds"] > 0:
        raise ConfigError(f"{source}: 'mutatorBudgetSeconds' must be more than 0, got {data['mutatorBudgetSeconds']!r}")
    if data.get("logFormat") not in (None, "text", "json"):
        raise ConfigError(f"{source}: 'logFormat' must be text or json, got {data['logFormat']!r}")
    if "workers" in data and data["workers"] is not None:
        from framework.web.workers import workers_arg

        try:
            data["workers"] = workers_arg(str(data["workers"]))
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    for key, attr in FILE_KEYS.items():
        if attr and key in data and data[key] is not None:
            setattr(config, attr, data[key])
    config.plugin_options = {k: v or {} for k, v in plugins.items()}
    election = data.get("leaderElection") or {}
    if not isinstance(election, dict):
        raise ConfigError(f"{source}: 'leaderElection' must be a mapping")
    if not isinstance(election.get("enabled", True), bool):
        raise ConfigError(f"{source}: 'leaderElection.enabled' must be true or false")
    config.leader_election = election.get("enabled", config.leader_election)
    config.lease_namespace = election.get("namespace", config.lease_namespace)
    config.lease_name = election.get("name", config.lease_name)
    return config
