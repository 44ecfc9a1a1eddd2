"""The ``hospital`` section of the node's configuration: DICOM listener, PACS destination, series rules.

Every key has a documented default; unknown keys are an error (a typo in an
AE title must not silently disable the allow-list). See docs/INTEGRATION.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

MAX_AE_TITLE_CHARS = 16


class HospitalConfigError(ValueError):
    """The hospital section of the configuration is invalid."""


@dataclass(frozen=True)
class DicomPeer:
    """A remote DICOM application entity (the PACS results are sent to)."""

    ae_title: str
    host: str
    port: int


@dataclass(frozen=True)
class HospitalConfig:
    ae_title: str = "LUNGLEDGER"
    dicom_host: str = "127.0.0.1"
    dicom_port: int | None = None  # None: no DICOM listener; 0: any free port (tests read it back)
    allowed_ae_titles: tuple[str, ...] = ()  # calling AE titles allowed; empty: any title
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "::1")  # peer addresses allowed; empty: any address
    destination: DicomPeer | None = None  # where reports go (C-STORE); None: kept in the queue only
    quiet_seconds: float = 10.0  # a series is complete when no instance arrived for this long
    max_series_instances: int = 1000  # more than this: the series is refused (too large), not truncated
    max_instance_bytes: int = 32 * 1024 * 1024
    lung_min_fraction: float = 0.03  # a slice "contains lung" when this share of pixels is in [-950, -500] HU
    retention_hours: float = 0.0  # keep received files this long after diagnosis (0: delete at once)
    retry_initial_seconds: float = 1.0  # first back-off after a failed send; doubles up to retry_max_seconds
    retry_max_seconds: float = 300.0
    wait_mined_seconds: float = 600.0  # a report waits for its block at most this long before it is sent anyway

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> HospitalConfig:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise HospitalConfigError(f"unknown hospital config key(s) {sorted(unknown)}; known: {sorted(known)}")
        for key in ("allowed_ae_titles", "allowed_hosts"):
            if key in values:
                values[key] = tuple(str(item) for item in values[key])
        if values.get("destination") is not None:
            destination = values["destination"]
            if not isinstance(destination, Mapping) or set(destination) != {"ae_title", "host", "port"}:
                raise HospitalConfigError("hospital.destination needs exactly ae_title, host and port")
            values["destination"] = DicomPeer(str(destination["ae_title"]), str(destination["host"]),
                                              int(destination["port"]))
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        titles = [self.ae_title, *self.allowed_ae_titles] + ([self.destination.ae_title] if self.destination else [])
        for title in titles:
            if not title.strip() or len(title) > MAX_AE_TITLE_CHARS or not title.isascii() or "\\" in title:
                raise HospitalConfigError(f"AE title {title!r} must be 1..16 ASCII characters without backslash")
        if self.dicom_port is not None and not 0 <= self.dicom_port <= 65535:
            raise HospitalConfigError(f"dicom_port must be 0..65535, got {self.dicom_port}")
        if not 1 <= self.max_series_instances <= 10_000:
            raise HospitalConfigError("max_series_instances must be 1..10000")
        if self.quiet_seconds <= 0 or self.retry_initial_seconds <= 0 or self.retry_max_seconds < self.retry_initial_seconds:
            raise HospitalConfigError("quiet_seconds and retry_initial_seconds must be > 0, retry_max >= retry_initial")
        if not 0.0 <= self.lung_min_fraction < 1.0 or self.retention_hours < 0:
            raise HospitalConfigError("lung_min_fraction must be in [0, 1) and retention_hours >= 0")
