"""Federated-round peer messages (issue 15): ``model_round``, ``model_update`` and ``model_metrics``.

``model_round`` and ``model_metrics`` are declared in ``consensus.entries`` (their
signed bytes are also governance entries of blocks) and re-exported here.
Wire containers only, each declared once as a ``FIELDS`` table
(consensus/encoding.py) with strict schemas and size limits like every other
message (docs/PROTOCOL.md); the signed bytes are the table without its final
``signature`` field. Both are signed by a member key over their fields
without the signature (domains below); the node (``node/federated.py``) checks
the signature against the chain's member list, and decodes the head bytes.
Numbers that are fractions (learning rate, penalty, AUC margins and metrics)
travel as integers in millionths: the canonical encoding has no floats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from consensus.crypto import MEMBER_ID_BYTES, SIGNATURE_BYTES
from consensus.encoding import Bin, Field, Int, ListOf, SignedCanonical, Str, TupleOf
from consensus.entries import METRICS_DOMAIN, MICRO, ROUND_DOMAIN, UPDATE_DOMAIN, ModelMetrics, ModelRound
from consensus.types import HASH_BYTES
from network.constants import MAX_HEAD_BYTES, MAX_MODEL_METRIC_CHARS, MAX_MODEL_METRICS

__all__ = ["METRICS_DOMAIN", "MICRO", "ROUND_DOMAIN", "UPDATE_DOMAIN", "ModelMetrics", "ModelRound", "ModelUpdate"]
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
