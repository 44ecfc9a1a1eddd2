"""DICOM networking with pynetdicom: the C-STORE listener (SCP) and the report sender (SCU).

pynetdicom runs each association on its own thread; both sides here are
blocking code that the node calls from threads, never from the event loop.

Listener rules:
- association: the calling AE title must be in ``allowed_ae_titles`` (when
  set) and the peer address in ``allowed_hosts`` (when set); otherwise the
  association is rejected (A-ASSOCIATE-RJ, "calling AE title not recognised"
  or "no reason given");
- presentation contexts: CT, CR and DX storage, in every transfer syntax
  pydicom can decode here; any other SOP class or syntax is not accepted in
  negotiation, so the sender learns it before sending a byte of pixel data;
- C-STORE: the handler answers with the status the node's callback returns
  (0x0000 stored, 0xA700 / 0xA900 / 0xC000 refused with an ErrorComment);
  any unexpected exception becomes 0xC000, never a crashed listener.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from node.hospital.config import DicomPeer
from node.hospital.instances import (
    ACCEPTED_SOP_CLASSES,
    STATUS_CANNOT_UNDERSTAND,
    STATUS_SUCCESS,
)

log = logging.getLogger("lungledger.hospital.dicom")

ACSE_TIMEOUT_S = 30
DIMSE_TIMEOUT_S = 60
NETWORK_TIMEOUT_S = 60
CONNECTION_TIMEOUT_S = 10
MAX_PDU_BYTES = 1 << 20
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

# (status, error comment)
StoreCallback = Callable[[bytes, str], tuple[int, str]]


def get_decodable_transfer_syntaxes() -> list[str]:
    """Transfer syntaxes whose pixel data pydicom can decode with the packages installed here."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID
    from pynetdicom import ALL_TRANSFER_SYNTAXES

    syntaxes = []
    for uid in ALL_TRANSFER_SYNTAXES:
        if not UID(uid).is_compressed:
            syntaxes.append(uid)
            continue
        try:
            if get_decoder(uid).is_available:
                syntaxes.append(uid)
        except NotImplementedError:
            continue
    return syntaxes


@dataclass
class StoreListener:
    """A running C-STORE SCP; ``port`` is the bound port (useful with port 0)."""

    server: Any
    port: int

    def stop(self) -> None:
        self.server.shutdown()


def start_listener(ae_title: str, host: str, port: int, allowed_ae_titles: Sequence[str],
                   allowed_hosts: Sequence[str], on_store: StoreCallback) -> StoreListener:
    from pynetdicom import AE, evt

    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = ACSE_TIMEOUT_S, DIMSE_TIMEOUT_S, NETWORK_TIMEOUT_S
    syntaxes = get_decodable_transfer_syntaxes()
    for sop_class in ACCEPTED_SOP_CLASSES:
        ae.add_supported_context(sop_class, syntaxes)
    ae.add_supported_context(VERIFICATION_SOP_CLASS)  # C-ECHO, so `echoscu` can check the connection
    if allowed_ae_titles:
        ae.require_calling_aet = list(allowed_ae_titles)

    def on_requested(event: Any) -> None:
        address = event.assoc.requestor.address
        if allowed_hosts and address not in allowed_hosts:
            log.warning("DICOM association from %s (%s) refused: address not allowed", address,
                        event.assoc.requestor.ae_title)
            event.assoc.acse.send_reject(0x01, 0x01, 0x01)
            event.assoc.kill()  # as pynetdicom does after its own rejections: lets the reject PDU go out first

    def on_c_store(event: Any) -> Any:
        try:
            status, comment = on_store(event.encoded_dataset(include_meta=True), event.assoc.requestor.ae_title)
        except Exception:  # the listener must answer, whatever went wrong inside
            log.exception("C-STORE handler failed")
            status, comment = STATUS_CANNOT_UNDERSTAND, "internal error while storing; see the node's log"
        if status == STATUS_SUCCESS:
            return STATUS_SUCCESS
        from pydicom.dataset import Dataset

        reply = Dataset()
        reply.Status = status
        reply.ErrorComment = comment[:64]
        return reply

    handlers: list[Any] = [(evt.EVT_C_STORE, on_c_store), (evt.EVT_REQUESTED, on_requested)]
    server = ae.start_server((host, port), block=False, evt_handlers=handlers)
    if server is None:
        raise RuntimeError("pynetdicom did not start the DICOM listener")
    bound = int(server.server_address[1])
    log.info("DICOM listener %s on %s:%d (callers: %s; hosts: %s)", ae_title, host, bound,
             list(allowed_ae_titles) or "any", list(allowed_hosts) or "any")
    return StoreListener(server, bound)


class SendError(RuntimeError):
    """The destination could not be reached or refused an instance."""



def send_instances(calling_ae_title: str, destination: DicomPeer, instances: Sequence[bytes]) -> None:
    """C-STORE every instance (DICOM Part 10 bytes) in one association; raise SendError on any failure."""
    import io

    import pydicom
    from pynetdicom import AE

    datasets = [pydicom.dcmread(io.BytesIO(data)) for data in instances]
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = ACSE_TIMEOUT_S, DIMSE_TIMEOUT_S, NETWORK_TIMEOUT_S
    ae.connection_timeout = CONNECTION_TIMEOUT_S
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise SendError(f"cannot associate with {destination.ae_title}@{destination.host}:{destination.port} "
                        f"(rejected, aborted or unreachable)")
    try:
        for dataset in datasets:
            status = assoc.send_c_store(dataset)
            code = getattr(status, "Status", None)
            if code is None:
                raise SendError(f"no C-STORE response from {destination.ae_title} (connection lost or timed out)")
            if code != STATUS_SUCCESS and not 0xB000 <= code <= 0xBFFF:  # Bxxx: stored with a warning
                raise SendError(f"{destination.ae_title} refused {dataset.SOPInstanceUID}: status 0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()
