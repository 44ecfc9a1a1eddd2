"""A real Orthanc PACS for the tests: Debian's ``Orthanc`` binary in a temp dir, on free loopback ports.

Each instance has its own configuration file, storage and index folders, no
plug-ins, no authentication and remote access off. Tests that need it skip
with a clear reason only when the binary is absent (``apt-get install orthanc``).

Orthanc cannot be told to bind port 0 and report the port it got, so its ports
are the one pick-then-bind left in the tests: picked by ``free_port`` just
before Orthanc starts, and picked again (up to ``START_ATTEMPTS`` times) if
Orthanc exits because another process took one in between. A node's DICOM
port is registered over Orthanc's REST API once the node has bound it
(``add_modality``), so nodes themselves always bind port 0.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.util import free_port, wait_until

ORTHANC_AE_TITLE = "ORTHANC"
START_TIMEOUT_S = 60.0
START_ATTEMPTS = 3


class OrthancExited(RuntimeError):
    """Orthanc stopped before answering (a port taken since it was picked, or a bad configuration)."""


def find_orthanc() -> str:
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if binary is None:
        pytest.skip("the Orthanc PACS is not installed (Debian package 'orthanc'; scripts/test.sh installs it)")
    return binary


@dataclass
class Orthanc:
    root: Path
    modalities: dict[str, list[Any]] = field(default_factory=dict)
    http_port: int = 0  # 0: picked at each start (and picked again if lost)
    dicom_port: int = 0  # the same; set it when a node must be told the PACS's address before the PACS starts
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "lungledger-test-pacs", "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"), "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AE_TITLE, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "Plugins": [], "DicomModalities": self.modalities, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True, "DicomCheckCalledAet": False, "DicomScuTimeout": 30,
            "SaveJobs": False, "StorageCompression": False, "HttpTimeout": 60,
        }
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self) -> None:
        pick_http, pick_dicom = self.http_port == 0, self.dicom_port == 0
        for attempt in range(1, START_ATTEMPTS + 1):
            if pick_http:
                self.http_port = free_port()
            if pick_dicom:
                self.dicom_port = free_port()
            config = self.write_config()
            with open(self.root / "orthanc.log", "ab") as log:  # the child keeps its own copy of the descriptor
                self.process = subprocess.Popen([find_orthanc(), str(config)], stdout=log, stderr=subprocess.STDOUT,
                                                cwd=self.root)
            try:
                wait_until(self._answers, START_TIMEOUT_S, "Orthanc to answer", interval=0.1)
                return
            except OrthancExited:
                if attempt == START_ATTEMPTS or not (pick_http or pick_dicom):
                    raise
                self.process = None

    def add_modality(self, name: str, ae_title: str, host: str, port: int) -> None:
        """Tell the running Orthanc where a DICOM peer (a node's listener, bound on port 0) is."""
        body = json.dumps({"AET": ae_title, "Host": host, "Port": port}).encode()
        self.request("PUT", f"/modalities/{name}", body)
        self.modalities[name] = [ae_title, host, port]  # kept if Orthanc is restarted from its config file

    def _answers(self) -> bool:
        """True once Orthanc answers /system; fails at once if its process has exited."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise OrthancExited(f"Orthanc exited with {self.process.returncode}; see {self.root / 'orthanc.log'}")
        try:
            self.get("/system")
        except (OSError, urllib.error.URLError):
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json",
                timeout: float = 120.0) -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers={"Content-Type": content_type} if body is not None else {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())

    def get(self, path: str) -> Any:
        return json.loads(self.request("GET", path))

    def upload(self, data: bytes) -> str:
        """Store one instance in Orthanc (as a modality would); returns Orthanc's instance id."""
        return str(json.loads(self.request("POST", "/instances", data, "application/dicom"))["ID"])

    def send_to(self, modality: str, instance_ids: list[str]) -> Any:
        """Orthanc C-STOREs the instances to a configured modality (synchronously)."""
        body = json.dumps({"Resources": instance_ids, "Synchronous": True}).encode()
        return json.loads(self.request("POST", f"/modalities/{modality}/store", body))

    def find_instances(self, study_uid: str, modality: str) -> list[str]:
        query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid, "Modality": modality}}
        return [str(i) for i in json.loads(self.request("POST", "/tools/find", json.dumps(query).encode()))]

    def instance_file(self, instance_id: str) -> bytes:
        return self.request("GET", f"/instances/{instance_id}/file")
