"""Federated-round peer messages (issue 15): ``model_round``, ``model_update``, ``model_metrics``,
and the head fetch ``get_head`` -> ``head`` / ``head_not_found``.

``model_round`` and ``model_metrics`` are declared in ``consensus.entries`` (their
signed bytes are also governance entries of blocks) and re-exported here.
Wire containers only, each declared once as a ``FIELDS`` table
(consensus/encoding.py) with strict schemas and size limits like every other
message (docs/PROTOCOL.md); the signed bytes are the table without its final
``signature`` field. Both are signed by a member key over their fields
without the signature (domains below); the node (``node/federated.py``) checks
the signature against the chain's member list, and decodes the head bytes.
``get_head`` asks a peer for a head by its digest (the digest a round result on
the chain names); the reply carries the head's bytes (the node checks them against
the digest and the model's shape) or says the peer does not hold it. They are
unsigned: the digest alone binds the bytes.
Numbers that are fractions (learning rate, penalty, AUC margins and metrics)
travel as integers in millionths: the canonical encoding has no floats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from consensus.crypto import MEMBER_ID_BYTES, SIGNATURE_BYTES
from consensus.encoding import Bin, Canonical, Field, Int, ListOf, SignedCanonical, Str, TupleOf
from consensus.entries import METRICS_DOMAIN, MICRO, ROUND_DOMAIN, UPDATE_DOMAIN, ModelMetrics, ModelRound
from consensus.types import HASH_BYTES
from network.constants import MAX_HEAD_BYTES, MAX_MODEL_METRIC_CHARS, MAX_MODEL_METRICS

__all__ = ["METRICS_DOMAIN", "MICRO", "ROUND_DOMAIN", "UPDATE_DOMAIN", "GetHead", "HeadNotFound", "HeadReply",
           "ModelMetrics", "ModelRound", "ModelUpdate"]
MAX_MICRO = 10**15
MAX_SAMPLE_COUNT = 10**7


HASH = Bin(HASH_BYTES)
MEMBER_ID = Bin(MEMBER_ID_BYTES)
SIGNATURE = Bin(SIGNATURE_BYTES)


@dataclass(frozen=True)
class ModelUpdate(SignedCanonical):
    """One site's trained head for one round, its sample count and metrics (name, millionths)."""

    TYPE: ClassVar[str] = "model_update"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (
        Field("round_id", HASH),
        Field("member_id", MEMBER_ID),
        Field("head", Bin(max_length=MAX_HEAD_BYTES)),
        Field("sample_count", Int(0, MAX_SAMPLE_COUNT)),
        Field("metrics", ListOf(TupleOf((Field("name", Str(MAX_MODEL_METRIC_CHARS)),
                                         Field("value", Int(-MAX_MICRO, MAX_MICRO)))), MAX_MODEL_METRICS)),
        Field("signature", SIGNATURE),
    )
    round_id: bytes
    member_id: bytes
    head: bytes
    sample_count: int
    metrics: tuple[tuple[str, int], ...]
    signature: bytes = b""

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(UPDATE_DOMAIN + self.signed_bytes()).digest()


@dataclass(frozen=True)
class HeadDigestMessage(Canonical):
    """A message that names one federated head by its digest and nothing else (base of ``GetHead`` and
    ``HeadNotFound``: the same table, two message types)."""

    WIRE_NAME: ClassVar[str] = "head_digest"
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("digest", HASH),)
    digest: bytes


@dataclass(frozen=True)
class GetHead(HeadDigestMessage):
    """Ask a peer for the federated head with this digest (SHA-256 over the head tag and its bytes)."""

    TYPE: ClassVar[str] = "get_head"
    WIRE_NAME: ClassVar[str] = TYPE


@dataclass(frozen=True)
class HeadReply(Canonical):
    """The head asked for: its digest and its bytes (little-endian float64 weights then bias)."""

    TYPE: ClassVar[str] = "head"
    WIRE_NAME: ClassVar[str] = TYPE
    FIELDS: ClassVar[tuple[Field, ...]] = (Field("digest", HASH), Field("head", Bin(max_length=MAX_HEAD_BYTES)))
    digest: bytes
    head: bytes


@dataclass(frozen=True)
class HeadNotFound(HeadDigestMessage):
    """The peer does not hold the head asked for (never a fault: the asker tries another peer)."""

    TYPE: ClassVar[str] = "head_not_found"
    WIRE_NAME: ClassVar[str] = TYPE
