"""The versioned handshake: hello both ways, then a signed challenge both ways.

Each side proves it holds the private key of the member id it claims by
signing, with HANDSHAKE_DOMAIN, the canonical msgpack array

    [chain_id, signer_member_id, verifier_member_id, signer_nonce, verifier_nonce,
     signer_certificate_hash, verifier_certificate_hash]

The verifier's fresh nonce makes the signature unusable on any other
connection; the chain id and both member ids bind it to this chain and this
pair of members; the two TLS leaf certificates (SHA-256 of their DER, each
certified by its member's key, see network.tls) bind it to *this* TLS link.
A relay terminating TLS shows its own certificates, so a signature forwarded
through it never verifies, and a member's hello must name the member its TLS
certificate is certified by. Without TLS (a node run with ``tls: false``) both
hashes are empty: the handshake then authenticates the peer, not the channel,
and violations ban the address only (network.service).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consensus.crypto import HANDSHAKE_DOMAIN, is_signature_valid, sign
from consensus.encoding import pack
from consensus.types import ChainParams
from network.constants import HANDSHAKE_TIMEOUT_S, MIN_PROTOCOL_VERSION, NONCE_BYTES, PROTOCOL_VERSION, USER_AGENT
from network.errors import HandshakeTimeout, PeerGone, ProtocolViolation
from network.messages import Auth, Hello
from network.peer import FrameChannel


@dataclass(frozen=True)
class LocalIdentity:
    private_key: Ed25519PrivateKey
    member_id: bytes
    chain_id: bytes
    params: ChainParams
    listen_port: int
    mines: bool = True


@dataclass(frozen=True)
class ChannelBinding:
    """The TLS link's two leaf certificates (empty without TLS) and the member the peer's one names."""

    own_certificate_hash: bytes = b""
    peer_certificate_hash: bytes = b""
    peer_member_id: bytes | None = None

    @property
    def is_bound(self) -> bool:
        return self.peer_member_id is not None


UNBOUND = ChannelBinding()


def compute_handshake_message(chain_id: bytes, signer_id: bytes, verifier_id: bytes, signer_nonce: bytes,
                              verifier_nonce: bytes, signer_certificate: bytes = b"",
                              verifier_certificate: bytes = b"") -> bytes:
    return pack([chain_id, signer_id, verifier_id, signer_nonce, verifier_nonce, signer_certificate,
                 verifier_certificate])


def make_hello(local: LocalIdentity, nonce: bytes, best_height: int) -> Hello:
    return Hello(PROTOCOL_VERSION, local.chain_id, local.member_id, nonce, local.listen_port, best_height, USER_AGENT,
                 int(local.mines))


def validate_hello(hello: Hello, local: LocalIdentity) -> None:
    """Refusals (not bans): an honest node may be older, on another chain, or not (yet) a member."""
    if hello.version < MIN_PROTOCOL_VERSION:
        raise PeerGone(f"protocol version {hello.version} is older than {MIN_PROTOCOL_VERSION}")
    if hello.chain_id != local.chain_id:
        raise PeerGone(f"peer is on chain {hello.chain_id.hex()[:16]}, not ours")
    if hello.member_id == local.member_id:
        raise PeerGone("connected to ourselves")
    if hello.member_id not in local.params.members_by_id:
        raise PeerGone(f"{hello.member_id.hex()} is not a consortium member")


def validate_binding(hello: Hello, binding: ChannelBinding) -> None:
    if binding.is_bound and hello.member_id != binding.peer_member_id:
        raise ProtocolViolation("identity-mismatch", f"hello claims {hello.member_id.hex()}, TLS certificate names "
                                f"{(binding.peer_member_id or b'').hex()}")


def is_auth_valid(local: LocalIdentity, hello: Hello, our_nonce: bytes, auth: Auth,
                  binding: ChannelBinding = UNBOUND) -> bool:
    public_key = local.params.members_by_id[hello.member_id].public_key
    message = compute_handshake_message(local.chain_id, hello.member_id, local.member_id, hello.nonce, our_nonce,
                                        binding.peer_certificate_hash, binding.own_certificate_hash)
    return is_signature_valid(public_key, auth.signature, HANDSHAKE_DOMAIN, message)


async def perform_handshake(channel: FrameChannel, local: LocalIdentity, best_height: int,
                            binding: ChannelBinding = UNBOUND) -> Hello:
    """Run the handshake; return the peer's (authenticated) hello.

    Raises PeerGone for refusals and timeouts, ProtocolViolation for anything
    malformed, out of order, or a signature that does not verify.
    """
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            return await _exchange(channel, local, best_height, binding)
    except TimeoutError as error:
        raise HandshakeTimeout("handshake timed out") from error


async def _exchange(channel: FrameChannel, local: LocalIdentity, best_height: int, binding: ChannelBinding) -> Hello:
    our_nonce = secrets.token_bytes(NONCE_BYTES)
    await channel.send_now(make_hello(local, our_nonce, best_height))
    hello = await channel.receive_message()
    if not isinstance(hello, Hello):
        raise ProtocolViolation("unexpected-message", f"{hello.TYPE} before hello")
    validate_hello(hello, local)
    validate_binding(hello, binding)
    message = compute_handshake_message(local.chain_id, local.member_id, hello.member_id, our_nonce, hello.nonce,
                                        binding.own_certificate_hash, binding.peer_certificate_hash)
    await channel.send_now(Auth(sign(local.private_key, HANDSHAKE_DOMAIN, message)))
    auth = await channel.receive_message()
    if not isinstance(auth, Auth):
        raise ProtocolViolation("unexpected-message", f"{auth.TYPE} before auth")
    if not is_auth_valid(local, hello, our_nonce, auth, binding):
        raise ProtocolViolation("bad-handshake-signature", f"claimed member {hello.member_id.hex()}")
    return hello
