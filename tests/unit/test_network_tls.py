"""Member-certified TLS: who gets a link, what the binding says, the operator certificate for browsers.

Real TLS 1.3 handshakes over loopback sockets (asyncio streams), no node.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from network.tls import P2P_SERVER_NAME, NodeTls, TlsIdentityError, build_node_tls, get_certified_member
from tests.support.builders import make_member

ALICE, BOB, OUTSIDER = make_member("Alice", 1), make_member("Bob", 2), make_member("Outsider", 3)
MEMBERS = [ALICE.member, BOB.member]


async def handshake(server: NodeTls | ssl.SSLContext, client: ssl.SSLContext, server_name: str | None,
                    check: NodeTls) -> tuple[bytes | None, bytes, str]:
    """One TLS link; returns (member the server saw or None, server certificate DER, TLS version)."""
    seen: list[bytes | None] = []
    served = asyncio.Event()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.append(check.get_binding(writer.get_extra_info("ssl_object")).peer_member_id)
        except TlsIdentityError:
            seen.append(None)
        writer.close()
        served.set()

    context = server.server_context if isinstance(server, NodeTls) else server
    listener = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=server_name)
        ssl_object = writer.get_extra_info("ssl_object")
        der, version = ssl_object.getpeercert(binary_form=True), ssl_object.version()
        await reader.read()
        writer.close()
        async with asyncio.timeout(5):
            await served.wait()
    finally:
        listener.close()
    return seen[0], der, version


async def test_members_get_a_mutual_tls_13_link_and_the_binding_names_them() -> None:
    alice, bob = build_node_tls(ALICE.key, ALICE.member_id, MEMBERS), build_node_tls(BOB.key, BOB.member_id, MEMBERS)
    member, der, version = await handshake(alice, bob.client_context, P2P_SERVER_NAME, alice)
    assert version == "TLSv1.3" and member == BOB.member_id
    assert get_certified_member(der, alice.members_by_id) == ALICE.member_id


async def test_a_certificate_not_certified_by_a_member_gets_no_link() -> None:
    alice = build_node_tls(ALICE.key, ALICE.member_id, MEMBERS)
    outsider = build_node_tls(OUTSIDER.key, OUTSIDER.member_id, [*MEMBERS, OUTSIDER.member])
    with pytest.raises((ssl.SSLError, ConnectionError, TimeoutError)):
        await handshake(alice, outsider.client_context, P2P_SERVER_NAME, alice)


def test_a_leaf_signed_by_another_key_is_refused() -> None:
    forged = build_node_tls(OUTSIDER.key, ALICE.member_id, [*MEMBERS, OUTSIDER.member])  # claims Alice
    with pytest.raises(TlsIdentityError, match="does not verify"):
        get_certified_member(forged.certificate_der, {m.member_id: m for m in MEMBERS})


async def test_browsers_get_the_operator_certificate_and_peers_the_member_one(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ledger.hospital.example")])
    now = datetime.datetime.now(datetime.UTC)
    operator = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(operator.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    alice = build_node_tls(ALICE.key, ALICE.member_id, MEMBERS, tmp_path / "cert.pem", tmp_path / "key.pem")
    browser = ssl.create_default_context(cafile=tmp_path / "cert.pem")
    _, der, _ = await handshake(alice, browser, "ledger.hospital.example", alice)
    assert der == operator.public_bytes(serialization.Encoding.DER)
    bob = build_node_tls(BOB.key, BOB.member_id, MEMBERS)
    member, der, _ = await handshake(alice, bob.client_context, P2P_SERVER_NAME, alice)
    assert member == BOB.member_id and der == alice.certificate_der

