"""TLS 1.3 for peer links and the API: certificates certified by the members' genesis keys.

Each node makes, at every start, a fresh P-256 TLS key and a certificate for it
*issued and signed by its Ed25519 member key* (issuer CN = the member id). The
members' public keys are known to every node from the genesis, so each node
builds one trust anchor per member: a certificate carrying that member's public
key under that name. The anchor's own signature is meaningless (only the member
could sign it) and is never checked: OpenSSL's partial-chain mode trusts the
anchor as given and checks the *leaf's* signature with the member key.

Peer links are mutual TLS: both ends must show a leaf certified by a member, and
TLS 1.3 proves each end holds its leaf key. A relay that is not the member
cannot complete either TLS session as that member, and the handshake's `auth`
signature also covers both leaf certificates (see network.handshake), so an
authenticated session is that member's end to end.

The same listener serves the API and page over HTTPS. Browsers have no member
certificate, so the server asks for one without requiring it; ``/p2p`` refuses
connections that did not present one. An operator certificate (``tls_cert`` /
``tls_key``) may be shown to browsers instead: peers ask for P2P_SERVER_NAME by
SNI and get the member-certified one.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from consensus.types import Member
from network.handshake import ChannelBinding

P2P_SERVER_NAME = "p2p.lungledger.invalid"  # SNI of peer links (never resolved)
LEAF_VALIDITY = datetime.timedelta(days=365)
CLOCK_SKEW = datetime.timedelta(hours=2)
ANCHOR_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
ANCHOR_NOT_AFTER = datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC)
# Signs the anchors only so they are well-formed certificates; never trusted for anything.
_ANCHOR_FILLER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"lungledger anchor filler").digest())


class TlsIdentityError(Exception):
    """The peer's certificate does not name a consortium member (or is absent)."""


def _member_name(member_id: bytes) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LungLedger member"),
        x509.NameAttribute(NameOID.COMMON_NAME, member_id.hex()),
    ])


def make_member_anchor(member: Member) -> x509.Certificate:
    """A trust anchor holding ``member``'s public key under its member-id name."""
    public_key = Ed25519PublicKey.from_public_bytes(member.public_key)
    return (
        x509.CertificateBuilder()
        .subject_name(_member_name(member.member_id))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unsigned member anchor")]))
        .public_key(public_key)
        .serial_number(int.from_bytes(member.member_id[:16], "big") | 1)
        .not_valid_before(ANCHOR_NOT_BEFORE)
        .not_valid_after(ANCHOR_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, False, False, False), critical=True)
        .sign(_ANCHOR_FILLER_KEY, algorithm=None)
    )


def make_leaf_certificate(member_key: Ed25519PrivateKey, member_id: bytes, tls_key: ec.EllipticCurvePrivateKey,
                          now: datetime.datetime) -> x509.Certificate:
    """The node's TLS certificate, issued by its member key."""
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, P2P_SERVER_NAME)]))
        .issuer_name(_member_name(member_id))
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(P2P_SERVER_NAME), x509.DNSName("localhost")]),
                       critical=False)
        .sign(member_key, algorithm=None)
    )


def get_certified_member(der: bytes, members_by_id: dict[bytes, Member]) -> bytes:
    """The member id whose key signed this leaf certificate (checked here too, not only by OpenSSL)."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        names = certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
        member_id = bytes.fromhex(str(names[0].value)) if len(names) == 1 else b""
    except ValueError as error:
        raise TlsIdentityError(f"unreadable peer certificate: {error}") from error
    member = members_by_id.get(member_id)
    if member is None:
        raise TlsIdentityError("peer certificate is not issued by a consortium member")
    try:
        Ed25519PublicKey.from_public_bytes(member.public_key).verify(certificate.signature,
                                                                     certificate.tbs_certificate_bytes)
    except InvalidSignature as error:
        raise TlsIdentityError("peer certificate signature does not verify with the member key") from error
    return member_id


def compute_certificate_hash(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()


@dataclass(frozen=True)
class NodeTls:
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    certificate_der: bytes
    members_by_id: dict[bytes, Member]

    @property
    def certificate_hash(self) -> bytes:
        return compute_certificate_hash(self.certificate_der)

    def get_binding(self, ssl_object: Any) -> ChannelBinding:
        """The binding of an established link; raises TlsIdentityError without a member certificate."""
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise TlsIdentityError("peer links need TLS with a member certificate")
        member_id = get_certified_member(der, self.members_by_id)
        return ChannelBinding(self.certificate_hash, compute_certificate_hash(der), member_id)


def _base_context(purpose: ssl.Purpose, chain_file: Path, anchors_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(chain_file)
    context.load_verify_locations(cadata=anchors_pem)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False  # peers are named by member id (checked after), not by host
    context.options |= ssl.OP_NO_TICKET  # no resumption: every link does a full handshake
    return context


def build_node_tls(member_key: Ed25519PrivateKey, member_id: bytes, members: Iterable[Member],
                   operator_cert: Path | None = None, operator_key: Path | None = None) -> NodeTls:
    """Fresh TLS key and certificate, and the server and client contexts of a node."""
    members_by_id = {member.member_id: member for member in members}
    tls_key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_leaf_certificate(member_key, member_id, tls_key, datetime.datetime.now(datetime.UTC))
    anchors_pem = "".join(make_member_anchor(m).public_bytes(serialization.Encoding.PEM).decode()
                          for m in members_by_id.values())
    key_pem = tls_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    with tempfile.TemporaryDirectory(prefix="lungledger-tls-") as directory:
        chain_file = Path(directory) / "chain.pem"
        descriptor = os.open(chain_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(leaf.public_bytes(serialization.Encoding.PEM) + key_pem)
        p2p_server = _base_context(ssl.Purpose.CLIENT_AUTH, chain_file, anchors_pem)
        p2p_server.verify_mode = ssl.CERT_OPTIONAL  # browsers have none; /p2p requires one
        client = _base_context(ssl.Purpose.SERVER_AUTH, chain_file, anchors_pem)
        client.verify_mode = ssl.CERT_REQUIRED
    server = p2p_server if operator_cert is None else _operator_context(operator_cert, operator_key, p2p_server,
                                                                        anchors_pem)
    return NodeTls(server, client, leaf.public_bytes(serialization.Encoding.DER), members_by_id)


def _operator_context(cert: Path, key: Path | None, p2p_server: ssl.SSLContext, anchors_pem: str) -> ssl.SSLContext:
    """Browsers get the operator's certificate; peers (SNI P2P_SERVER_NAME) the member-certified one.

    OpenSSL keeps the first context's verification settings when the SNI
    callback switches certificates, so this one asks for member certificates
    too (optional, as for browsers).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cadata=anchors_pem)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.verify_mode = ssl.CERT_OPTIONAL

    def choose(ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if server_name == P2P_SERVER_NAME:
            ssl_object.context = p2p_server

    context.sni_callback = choose
    return context


def compute_fingerprint(der: bytes) -> str:
    """SHA-256 fingerprint as browsers show it (AA:BB:...)."""
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())
