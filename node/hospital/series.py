"""Grouping received instances into series, and deciding when a series is complete.

Pure bookkeeping on the event loop (no I/O, no clock of its own: ``now`` comes
in as an argument). Rules:

- CT instances are grouped by SeriesInstanceUID; a series is complete when no
  new instance arrived for ``quiet_seconds``.
- A radiograph (CR/DX) is diagnosed per instance: it is complete on arrival.
- An instance whose PatientID differs from the series' first instance is
  refused (``patient-mismatch``); the series goes on without it.
- A series that reaches ``max_series_instances`` is marked too large: later
  instances are refused (``series-too-large``) and the series is refused as a
  whole when complete (a truncated series could miss the slice that matters).
- The same SOPInstanceUID twice is kept once (a PACS re-sending after a
  lost acknowledgement is normal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from node.hospital.instances import (
    STATUS_NOT_MATCHING,
    STATUS_OUT_OF_RESOURCES,
    InstanceError,
    InstanceInfo,
)


@dataclass(frozen=True)
class ReceivedInstance:
    info: InstanceInfo
    path: Path  # the received file, durable in the inbox until the series is done


@dataclass
class OpenSeries:
    series_uid: str
    patient_id: str
    modality: str
    instances: dict[str, ReceivedInstance] = field(default_factory=dict)
    last_arrival: float = 0.0
    too_large: bool = False
    refused_count: int = 0


@dataclass(frozen=True)
class CompleteSeries:
    """A series ready to diagnose (or to refuse, when ``refusal`` is set)."""

    series_uid: str
    modality: str
    instances: tuple[ReceivedInstance, ...]  # ordered by slice position, then instance number
    refused_count: int
    refusal: str | None = None

    @property
    def first(self) -> InstanceInfo:
        return self.instances[0].info


def order_instances(instances: list[ReceivedInstance]) -> tuple[ReceivedInstance, ...]:
    def key(item: ReceivedInstance) -> tuple[float, int, str]:
        position = item.info.slice_position
        return (position if position is not None else float(item.info.instance_number),
                item.info.instance_number, item.info.sop_instance_uid)

    return tuple(sorted(instances, key=key))


class SeriesAssembler:
    def __init__(self, quiet_seconds: float, max_instances: int) -> None:
        self.quiet_seconds = quiet_seconds
        self.max_instances = max_instances
        self.open: dict[str, OpenSeries] = {}
        self.ready: list[CompleteSeries] = []

    def add(self, item: ReceivedInstance, now: float) -> None:
        """Take one instance; raises InstanceError when it is refused (the caller deletes its file)."""
        info = item.info
        if not info.is_ct:
            self.ready.append(CompleteSeries(info.sop_instance_uid, info.modality, (item,), 0))
            return
        series = self.open.get(info.series_instance_uid)
        if series is None:
            series = self.open[info.series_instance_uid] = OpenSeries(info.series_instance_uid, info.patient_id,
                                                                      info.modality)
        series.last_arrival = now
        if info.patient_id != series.patient_id:
            series.refused_count += 1
            raise InstanceError("patient-mismatch", "this instance names another patient than the rest of its "
                                                    "series; it was refused, the series goes on without it",
                                STATUS_NOT_MATCHING)
        if info.sop_instance_uid in series.instances:
            return
        if len(series.instances) >= self.max_instances:
            series.too_large = True
            series.refused_count += 1
            raise InstanceError("series-too-large", f"the series has more than {self.max_instances} instances; "
                                                    "it is refused as a whole", STATUS_OUT_OF_RESOURCES)
        series.instances[info.sop_instance_uid] = item

    def next_deadline(self) -> float | None:
        """When the earliest open series becomes complete (None when none is open)."""
        if not self.open:
            return None
        return min(series.last_arrival for series in self.open.values()) + self.quiet_seconds

    def take_complete(self, now: float, flush: bool = False) -> list[CompleteSeries]:
        """Remove and return every series quiet for long enough (all of them with ``flush``)."""
        done = self.ready
        self.ready = []
        for uid in [uid for uid, s in self.open.items() if flush or now - s.last_arrival >= self.quiet_seconds]:
            series = self.open.pop(uid)
            refusal = (f"series-too-large: more than {self.max_instances} instances" if series.too_large else None)
            done.append(CompleteSeries(uid, series.modality, order_instances(list(series.instances.values())),
                                       series.refused_count, refusal))
        return done
