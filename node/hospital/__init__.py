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

from node.keys import CHAIN, CONFIG
from node.hospital.config import HospitalConfig
from node.hospital.routes import HOSPITAL, setup_routes
from node.hospital.service import HospitalService

__all__ = ["HOSPITAL", "HospitalConfig", "HospitalService", "setup_hospital"]


def setup_hospital(app: web.Application, hospital_section: object) -> None:
    """Add the routes and the service; the ``hospital`` section (defaults when empty) configures it.

    With the defaults there is no DICOM listener (``dicom_port`` unset) and no report destination,
    so no reports are built; POST /studies, FHIR and risk-factor amendments work on any node.
    """
    setup_routes(app)
    config = HospitalConfig.from_mapping(hospital_section if isinstance(hospital_section, dict) else {})

    async def hospital_context(app: web.Application) -> AsyncIterator[None]:
        service = HospitalService(app, app[CONFIG].data_dir, config)
        app[HOSPITAL] = service
        await service.start()
        app[CHAIN].listeners.append(service.on_blocks)
        yield
        await service.stop()

    app.cleanup_ctx.append(hospital_context)
