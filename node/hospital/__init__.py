"""The node inside a hospital: DICOM in (C-STORE, STOW-RS), CT series, SR/SC back to the PACS, FHIR out.

``setup_hospital(app, config)`` is the one call the node's application
factory makes; it reads the ``hospital`` section of the node configuration
(:class:`node.hospital.config.HospitalConfig`) and adds the routes and the
service's start/stop. pynetdicom, highdicom and fhir.resources are the
``hospital`` extra of the package; they are imported only when used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from node.app import CHAIN, CONFIG
from node.hospital.config import HospitalConfig
from node.hospital.routes import HOSPITAL, setup_routes
from node.hospital.service import HospitalService

__all__ = ["HOSPITAL", "HospitalConfig", "HospitalService", "setup_hospital"]


def setup_hospital(app: web.Application, hospital_section: object) -> None:
    """Add the routes; with a ``hospital`` section, also the service (inbox, queue, DICOM listener if a port is set).

    Without a section (the default) the node creates no hospital files; the FHIR route still works and
    POST /studies answers 503 until a section is configured.
    """
    setup_routes(app)
    if not hospital_section:
        return
    config = HospitalConfig.from_mapping(hospital_section if isinstance(hospital_section, dict) else {})

    async def hospital_context(app: web.Application) -> AsyncIterator[None]:
        service = HospitalService(app, app[CONFIG].data_dir, config)
        app[HOSPITAL] = service
        await service.start()
        app[CHAIN].listeners.append(service.on_blocks)
        yield
        await service.stop()

    app.cleanup_ctx.append(hospital_context)
