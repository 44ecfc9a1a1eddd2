"""Node configuration (command line or a JSON file), with documented defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "models"


@dataclass(frozen=True)
class NodeConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8545
    genesis_path: Path | None = None  # default: <data_dir>/genesis.json
    peers: tuple[str, ...] = ()  # bootstrap peers as "host:port"
    plugin: str | None = "mobilenetv2"  # None or "none": relay only, no diagnostics
    plugin_options: dict[str, Any] = field(default_factory=dict)
    models_dir: Path = DEFAULT_MODELS_DIR
    max_peers: int = 16
    log_level: str = "INFO"
    outbound_peers: int = 8  # outbound connections kept (bootstrap peers always; 0 = bootstrap peers only)
    hospital: dict[str, Any] = field(default_factory=dict)  # DICOM/PACS/FHIR section: node.hospital.config
    tls: bool = True  # HTTPS for the API and mutual TLS for peer links; false only for development
    tls_cert: Path | None = None  # operator certificate (PEM) shown to browsers; default: the node's own
    tls_key: Path | None = None  # its private key (PEM), if not in tls_cert
    federated: dict[str, Any] = field(default_factory=dict)  # federated rounds: node.federated_round.FederatedSettings
    mine: bool = True  # false: never mine; the node still relays its records and peers' for the others to mine

    @property
    def resolved_genesis_path(self) -> Path:
        return self.genesis_path or self.data_dir / "genesis.json"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "chain.sqlite3"

    @classmethod
    def from_json_file(cls, path: Path, **overrides: Any) -> NodeConfig:
        """Load a JSON config; unknown keys are an error (typos must not pass silently)."""
        data = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys in {path}: {sorted(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("data_dir", "genesis_path", "models_dir", "tls_cert", "tls_key"):
            if data.get(key) is not None:
                data[key] = Path(data[key])
        data["peers"] = tuple(data.get("peers", ()))
        return cls(**data)
