"""The hospital integration at run time: inbox, series assembly, diagnosis, record, report queue.

Flow of one instance received over DICOM (or in a STOW-RS request):

1. the header is checked (:mod:`node.hospital.instances`); the file is written
   to ``<data_dir>/hospital/inbox`` and fsynced *before* the sender gets its
   success status, so an acknowledged instance survives a crash (the inbox is
   re-read at start);
2. the series assembler groups it; a complete series is diagnosed
   (:mod:`node.hospital.pipeline`) and recorded like POST /diagnoses records
   (keyed pseudonym of PatientID, signed record, details committed with it);
3. when a destination PACS is configured, a report job is queued durably in
   ``hospital.sqlite3`` *before* the record is committed; the received files are then deleted (or kept for
   ``retention_hours``);
4. when the record is mined, the SR and the Secondary Capture are built once
   and sent to the destination, retried with exponential back-off until the
   PACS takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from node.keys import CHAIN, IDENTITY, MINER, PLUGIN
from node.hospital.config import HospitalConfig
from node.hospital.instances import STATUS_SUCCESS, InstanceError, read_instance_info
from node.hospital.pipeline import SeriesDiagnosis, SeriesRefused, diagnose_series
from node.hospital.reports import ReportContext, build_reports, read_report_context
from node.hospital.series import CompleteSeries, ReceivedInstance, SeriesAssembler
from node.hospital.store import (
    STATE_AWAITING_BLOCK,
    STATE_READY,
    HospitalStore,
    ReportJob,
)
from node.records import RecordError, build_record_from_stored, derive_record_keys, parse_details

log = logging.getLogger("lungledger.hospital")
T = TypeVar("T")

ADMIT_TIMEOUT_S = 30.0
IDLE_POLL_S = 5.0
RETENTION_SWEEP_S = 600.0


def compute_file_name(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:32]


def write_durably(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".part")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class HospitalService:
    def __init__(self, app: web.Application, data_dir: Path, config: HospitalConfig) -> None:
        self.app = app
        self.config = config
        self.root = data_dir / "hospital"
        self.inbox = self.root / "inbox"
        self.retained = self.root / "retained"
        self.db_path = data_dir / "hospital.sqlite3"
        self.assembler = SeriesAssembler(config.quiet_seconds, config.max_series_instances)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hospital-db")
        self.store: HospitalStore | None = None
        self.listener: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.series_wakeup = asyncio.Event()
        self.outbound_wakeup = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.series_lock = asyncio.Lock()  # one series diagnosed at a time: bounded CPU and memory
        self.stats = {"received": 0, "refused": 0, "series_recorded": 0, "series_refused": 0, "reports_sent": 0,
                      "send_failures": 0}

    # ------------------------------------------------------------ lifecycle
    async def db(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.store = await self.db(HospitalStore, self.db_path)
        await self.recover_inbox()
        if self.config.dicom_port is not None:
            from node.hospital.dicom_net import start_listener

            self.listener = await asyncio.to_thread(
                start_listener, self.config.ae_title, self.config.dicom_host, self.config.dicom_port,
                self.config.allowed_ae_titles, self.config.allowed_hosts, self.receive_from_thread)
        self.tasks = [asyncio.create_task(self.series_loop(), name="hospital-series"),
                      asyncio.create_task(self.outbound_loop(), name="hospital-outbound")]

    async def stop(self) -> None:
        if self.listener is not None:
            await asyncio.to_thread(self.listener.stop)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.store is not None:
            await self.db(self.store.close)
        self.executor.shutdown(wait=True)

    @property
    def dicom_port(self) -> int | None:
        return None if self.listener is None else int(self.listener.port)

    async def on_blocks(self, results: Sequence[Any], source: Any) -> None:
        self.outbound_wakeup.set()

    # ------------------------------------------------------------ receiving
    def save_instance(self, data: bytes) -> ReceivedInstance:
        """Check the header and write the file durably (blocking: call from a thread)."""
        info = read_instance_info(data, self.config.max_instance_bytes)
        path = self.inbox / compute_file_name(info.series_instance_uid) / f"{compute_file_name(info.sop_instance_uid)}.dcm"
        write_durably(path, data)
        return ReceivedInstance(info, path)

    def receive_from_thread(self, data: bytes, calling_ae_title: str) -> tuple[int, str]:
        """The C-STORE callback (on a pynetdicom thread): status and comment for the sender."""
        try:
            item = self.save_instance(data)
        except InstanceError as error:
            self.stats["refused"] += 1
            log.warning("DICOM instance from %s refused: %s", calling_ae_title, error)
            return error.status, error.message
        if self.loop is None:
            raise RuntimeError("the hospital service is not started")
        future = asyncio.run_coroutine_threadsafe(self.admit(item), self.loop)
        return future.result(timeout=ADMIT_TIMEOUT_S)

    async def admit(self, item: ReceivedInstance) -> tuple[int, str]:
        try:
            self.assembler.add(item, time.monotonic())
        except InstanceError as error:
            self.stats["refused"] += 1
            log.warning("instance of series %s refused: %s", item.info.series_instance_uid, error)
            await asyncio.to_thread(item.path.unlink, True)
            return error.status, error.message
        self.stats["received"] += 1
        self.series_wakeup.set()
        return STATUS_SUCCESS, ""

    async def recover_inbox(self) -> None:
        """Instances acknowledged before a stop go back into the assembler."""
        paths = await asyncio.to_thread(lambda: sorted(self.inbox.glob("*/*.dcm")))
        for path in paths:
            try:
                item = await asyncio.to_thread(self.save_instance_from_disk, path)
            except InstanceError as error:
                log.warning("inbox file %s dropped: %s", path.name, error)
                await asyncio.to_thread(path.unlink, True)
                continue
            await self.admit(item)
        if paths:
            log.info("recovered %d received instances from the inbox", len(paths))

    def save_instance_from_disk(self, path: Path) -> ReceivedInstance:
        return ReceivedInstance(read_instance_info(path.read_bytes(), self.config.max_instance_bytes), path)

    # ------------------------------------------------------------ series
    async def series_loop(self) -> None:
        last_sweep = 0.0
        while True:
            deadline = self.assembler.next_deadline()
            timeout = IDLE_POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.series_wakeup.wait(), timeout)
            self.series_wakeup.clear()
            for series in self.assembler.take_complete(time.monotonic()):
                await self.process_series(series, "dicom")
            if time.monotonic() - last_sweep > RETENTION_SWEEP_S:
                last_sweep = time.monotonic()
                await asyncio.to_thread(self.sweep_retained)

    async def process_series(self, series: CompleteSeries, source: str) -> dict[str, Any]:
        """Diagnose, record and queue the report; a refusal is logged, never raised.

        The received files are disposed of *before* the series is logged, so a logged series never has
        files left in the inbox (a restart would otherwise diagnose it again, and a reader of the log
        could see files that are about to go).
        """
        outcome: dict[str, Any] = {"series_instance_uid": series.series_uid, "modality": series.modality,
                                   "instances": len(series.instances)}
        try:
            async with self.series_lock:
                plugin = self.get_plugin()
                diagnosis = await diagnose_series(plugin, series, self.config.lung_min_fraction)
                record_id = await self.record(diagnosis)
        except SeriesRefused as error:
            log.warning("series %s (%d instances) refused: %s", series.series_uid, len(series.instances), error)
            await asyncio.to_thread(self.dispose, series.instances)
            await self.log_series(source, series, "refused", str(error), None)
            self.stats["series_refused"] += 1  # last: a reader of the counters finds the log written
            return {**outcome, "status": "refused", "code": error.code, "reason": error.message}
        await asyncio.to_thread(self.dispose, series.instances)
        await self.log_series(source, series, "recorded", None, record_id)
        self.stats["series_recorded"] += 1  # last: a reader of the counters finds the log written
        log.info("series %s diagnosed: %s slices, record %s", series.series_uid,
                 diagnosis.result["series"]["slices_diagnosed"], record_id.hex())
        return {**outcome, "status": "recorded", "record_id": record_id.hex(), "label": diagnosis.result["label"],
                "risk_level": diagnosis.result["risk_level"], "series": diagnosis.result["series"]}

    def get_plugin(self) -> Any:
        plugin = self.app.get(PLUGIN)
        if plugin is None:
            raise SeriesRefused("relay-only", "this node runs without a diagnostic plug-in (relay only)")
        return plugin

    async def log_series(self, source: str, series: CompleteSeries, outcome: str, reason: str | None,
                         record_id: bytes | None) -> None:
        store = self.require_store()
        await self.db(store.log_series, source, series.series_uid, series.modality,
                      len(series.instances) + series.refused_count, outcome, reason, record_id, int(time.time() * 1000))

    def require_store(self) -> HospitalStore:
        if self.store is None:
            raise RuntimeError("the hospital service is not started")
        return self.store

    async def record(self, diagnosis: SeriesDiagnosis) -> bytes:
        """Sign and commit the record; the report job is queued first, so it cannot be lost."""
        chain, identity = self.app[CHAIN], self.app[IDENTITY]
        keys = derive_record_keys(identity.private_key)
        info = diagnosis.top.info
        try:
            new = await asyncio.to_thread(build_record_from_stored, diagnosis.result,
                                          {diagnosis.modality: diagnosis.top_bytes},
                                          info.patient_id or None, identity.private_key, identity.member_id, keys,
                                          chain.clock_ms())
        except RecordError as error:
            raise SeriesRefused(error.code, error.message) from None
        references = tuple((item.info.sop_class_uid, item.info.sop_instance_uid) for item in diagnosis.diagnosed)
        if self.config.destination is not None:  # no PACS configured: no report to build or keep
            context = await asyncio.to_thread(_read_context, diagnosis.top.path, references)
            await self.db(self.require_store().add_job, new.record.record_id, context, int(time.time() * 1000))
        await chain.add_pending_record(new.record, new.details_bytes)
        self.app[MINER].wake()
        return new.record.record_id

    def dispose(self, instances: Sequence[ReceivedInstance]) -> None:
        """Delete the received files, or move them to the retention folder when one is configured."""
        for item in instances:
            if self.config.retention_hours > 0:
                target = self.retained / item.path.parent.name / item.path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(FileNotFoundError):
                    shutil.move(str(item.path), target)
            else:
                item.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                item.path.parent.rmdir()  # only succeeds once the series folder is empty

    def sweep_retained(self) -> None:
        cutoff = time.time() - self.config.retention_hours * 3600
        for path in self.retained.glob("*/*.dcm"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------ outbound
    async def outbound_loop(self) -> None:
        while True:
            await self.build_reports()
            await self.send_due_reports()
            store = self.require_store()
            next_due = await self.db(store.next_due_ms)
            timeout = IDLE_POLL_S
            if next_due is not None and self.config.destination is not None:
                timeout = min(IDLE_POLL_S, max(0.05, (next_due - time.time() * 1000) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbound_wakeup.wait(), timeout)
            self.outbound_wakeup.clear()

    async def build_reports(self) -> None:
        chain, store = self.app[CHAIN], self.require_store()
        for job in await self.db(store.get_jobs, STATE_AWAITING_BLOCK):
            [location] = await chain.get_record_locations([job.record_id])
            waited = time.time() * 1000 - job.created_ms > self.config.wait_mined_seconds * 1000
            if location is None and not waited:
                continue
            details = await chain.get_details(job.record_id)
            if details is None or job.context is None:
                await self.db(store.mark_failed, job.job_id, "the record's details are gone; nothing to report")
                continue
            record = _record_summary(job, details, location)
            payloads = await asyncio.to_thread(build_reports, ReportContext.from_json(job.context), record)
            await self.db(store.set_ready, job.job_id, [(_sop_instance_uid(data), data) for data in payloads])

    async def send_due_reports(self) -> None:
        from node.hospital.dicom_net import SendError, send_instances

        destination, store = self.config.destination, self.require_store()
        if destination is None:
            return
        for job in await self.db(store.get_jobs, STATE_READY, int(time.time() * 1000)):
            payloads = await self.db(store.get_payloads, job.job_id)
            try:
                await asyncio.to_thread(send_instances, self.config.ae_title, destination, [d for _, d in payloads])
            except (SendError, OSError, RuntimeError, ValueError) as error:
                delay = min(self.config.retry_max_seconds, self.config.retry_initial_seconds * 2 ** job.attempts)
                self.stats["send_failures"] += 1
                log.warning("report for record %s not delivered (attempt %d), retry in %.1f s: %s",
                            job.record_id.hex(), job.attempts + 1, delay, error)
                await self.db(store.mark_attempt_failed, job.job_id, str(error), int((time.time() + delay) * 1000))
                continue
            await self.db(store.mark_sent, job.job_id, int(time.time() * 1000))
            self.stats["reports_sent"] += 1
            log.info("report for record %s delivered to %s", job.record_id.hex(), destination.ae_title)

    async def status(self) -> dict[str, Any]:
        store = self.require_store()
        destination = self.config.destination
        return {"ae_title": self.config.ae_title, "dicom_port": self.dicom_port,
                "destination": None if destination is None else
                {"ae_title": destination.ae_title, "host": destination.host, "port": destination.port},
                "open_series": len(self.assembler.open), "stats": dict(self.stats),
                "report_jobs": await self.db(store.count_jobs),
                "series_log": await self.db(store.get_series_log, 20)}


def _read_context(path: Path, references: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    import pydicom

    header = pydicom.dcmread(path, stop_before_pixels=True)
    return read_report_context(header, references).to_json()


def _sop_instance_uid(data: bytes) -> str:
    import io

    import pydicom

    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)


def _record_summary(job: ReportJob, details: bytes, location: Any) -> dict[str, Any]:
    parsed = parse_details(details)
    meta = location[0] if location is not None else None
    return {"record_id": job.record_id.hex(), "result": parsed["result"],
            "block_height": meta.height if meta is not None else "not mined yet",
            "block_hash": meta.block_hash.hex() if meta is not None else "not mined yet"}


