"""Diagnosis results -> signed on-chain records + off-chain details, and their verification.

What goes on chain (:class:`consensus.types.DiagnosisRecord`) is what an
auditor needs and nothing that identifies a patient:

- ``image_digests``: HMAC-SHA256 of each uploaded image under a per-node key,
  so the digests cannot be matched against an image outside the hospital
  (a plain SHA-256 could be, by anyone holding the same file);
- ``details_digest``: SHA-256 over a canonical JSON *commitment* to the
  off-chain details (risk factors, pseudonymised patient reference,
  recommendations, a digest of the full result) and a random 32-byte salt,
  so the few possible risk-factor combinations cannot be guessed from it.

The off-chain details (the commitment, the full result with heatmaps, the
image digests) are JSON bytes stored in the same transaction as the pending
record (:meth:`node.store.ChainStore.add_pending_record`); no raw image and no
clear-text patient reference is stored anywhere.

Keys: two 32-byte keys derived with HKDF-SHA256 from the node's Ed25519
private key, one per purpose, so they live and die with the node key and need
no extra file. Whoever holds the node key can recompute a patient's
pseudonym (to find their records); nobody else can.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from consensus.builders import sign_record
from consensus.crypto import RECORD_DOMAIN, is_signature_valid
from consensus.merkle import is_merkle_proof_valid
from consensus.types import HASH_BYTES, PPM, RECORD_ID_BYTES, DiagnosisRecord, Member
from diagnostics.result import DiagnosisResult

DETAILS_VERSION = 1
SALT_BYTES = 32
MAX_PATIENT_REF_CHARS = 128
IMAGE_KEY_INFO = b"lungledger/image-digest/v1"
PATIENT_KEY_INFO = b"lungledger/patient-ref/v1"
DETAILS_DOMAIN = b"lungledger/details/v1\x00"

# Verification outcomes (the "status" of GET /records/{id}/verify).
STATUS_INTACT = "intact"
STATUS_TAMPERED = "tampered"
STATUS_PENDING = "pending"
STATUS_NOT_FOUND = "not-found"
STATUS_NO_DETAILS = "no-local-details"
STATUS_ORPHANED = "orphaned"


class RecordError(ValueError):
    """A result cannot be turned into a record (e.g. a model id that is not a SHA-256)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RecordKeys:
    """Per-node secrets for keyed image digests and patient pseudonyms."""

    image_key: bytes
    patient_key: bytes


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def derive_record_keys(private_key: Ed25519PrivateKey) -> RecordKeys:
    secret = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption())
    return RecordKeys(image_key=_derive(secret, IMAGE_KEY_INFO), patient_key=_derive(secret, PATIENT_KEY_INFO))


def compute_image_digest(keys: RecordKeys, modality: str, image: bytes) -> bytes:
    """HMAC-SHA256 over the modality and the exact uploaded bytes."""
    return hmac.new(keys.image_key, modality.encode() + b"\x00" + image, hashlib.sha256).digest()


def normalise_patient_ref(patient_ref: str | None) -> str | None:
    """Trimmed reference, or None when empty; raises on over-long or control characters."""
    if patient_ref is None or not patient_ref.strip():
        return None
    text = patient_ref.strip()
    if len(text) > MAX_PATIENT_REF_CHARS or any(ord(ch) < 32 for ch in text):
        raise RecordError("bad-patient-ref", f"patient_ref must be at most {MAX_PATIENT_REF_CHARS} printable characters")
    return text


def compute_patient_pseudonym(keys: RecordKeys, patient_ref: str | None) -> str | None:
    """Keyed hash (hex) of the normalised patient reference; None when no reference was given."""
    text = normalise_patient_ref(patient_ref)
    if text is None:
        return None
    return hmac.new(keys.patient_key, text.encode(), hashlib.sha256).hexdigest()


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_json_default).encode()


def compute_details_digest(commitment: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(DETAILS_DOMAIN + canonical_json(commitment)).digest()


def compute_result_digest(result: Mapping[str, Any] | None) -> str:
    return hashlib.sha256(canonical_json(result)).hexdigest()


def to_ppm(probability: float) -> int:
    return min(PPM, max(0, round(float(probability) * PPM)))


@dataclass(frozen=True)
class NewRecord:
    """A signed record and the off-chain details that go with it."""

    record: DiagnosisRecord
    details: dict[str, Any]

    @property
    def details_bytes(self) -> bytes:
        return canonical_json(self.details)


def _model_id(modality: str, sha256: object) -> bytes:
    try:
        model_id = bytes.fromhex(str(sha256))
    except (TypeError, ValueError) as error:
        raise RecordError("bad-result", f"{modality}: the plug-in gave no valid model sha256") from error
    if len(model_id) != HASH_BYTES:
        raise RecordError("bad-result", f"{modality}: model sha256 must be 32 bytes")
    return model_id


def build_record(result: DiagnosisResult, images: Mapping[str, bytes], patient_ref: str | None,
                 private_key: Ed25519PrivateKey, member_id: bytes, keys: RecordKeys, created_ms: int,
                 record_id: bytes | None = None, salt: bytes | None = None, operator: str | None = None) -> NewRecord:
    """Turn a plug-in result and its images into a signed record and its off-chain details.

    ``operator`` (the user name that ran it) goes into the committed off-chain details, never on chain.
    """
    return build_record_from_stored(result.to_dict(), images, patient_ref, private_key, member_id, keys,
                                    created_ms, record_id, salt, operator)


def build_record_from_stored(result: Mapping[str, Any], images: Mapping[str, bytes], patient_ref: str | None,
                             private_key: Ed25519PrivateKey, member_id: bytes, keys: RecordKeys, created_ms: int,
                             record_id: bytes | None = None, salt: bytes | None = None,
                             operator: str | None = None) -> NewRecord:
    """:func:`build_record` for a result already in its stored JSON form (``DiagnosisResult.to_dict()``
    plus any extra sections, e.g. a PACS series result or an amended result re-read from details)."""
    record_id = record_id or secrets.token_bytes(RECORD_ID_BYTES)
    stored = json.loads(canonical_json(result))  # plain JSON types, exactly as stored and re-read
    try:
        modalities = tuple(sorted(stored["modalities"]))
        entries = {m: stored["modalities"][m] for m in modalities}
        probabilities = tuple(to_ppm(entries[m]["probability"]) for m in modalities)
        model_ids = tuple(_model_id(m, (entries[m].get("model") or {}).get("sha256")) for m in modalities)
        fused_ppm, label, risk_level = to_ppm(stored["fused_probability"]), str(stored["label"]), str(stored["risk_level"])
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise RecordError("bad-result", f"the result is missing a field a record needs: {error}") from error
    if set(modalities) != set(images):
        raise RecordError("bad-result", f"result covers {list(modalities)} but images were {sorted(images)}")
    digests = {m: compute_image_digest(keys, m, images[m]) for m in modalities}
    commitment = {
        "version": DETAILS_VERSION,
        "record_id": record_id.hex(),
        "salt": (salt or secrets.token_bytes(SALT_BYTES)).hex(),
        "patient_pseudonym": compute_patient_pseudonym(keys, patient_ref),
        "risk_factors": dict(stored.get("risk_factors") or {}),
        "recommendations": list(stored.get("recommendations") or []),
        "result_digest": compute_result_digest(stored),
    }
    if operator is not None:
        commitment["operator"] = operator
    unsigned = DiagnosisRecord(
        record_id=record_id,
        member_id=member_id,
        created_ms=created_ms,
        modalities=modalities,
        image_digests=tuple(digests[m] for m in modalities),
        model_ids=model_ids,
        probabilities_ppm=probabilities,
        fused_ppm=fused_ppm,
        label=label,
        risk_level=risk_level,
        details_digest=compute_details_digest(commitment),
    )
    details = {
        "version": DETAILS_VERSION,
        "record_id": record_id.hex(),
        "created_ms": created_ms,
        "commitment": commitment,
        "images": {m: {"digest": digests[m].hex(), "bytes": len(images[m])} for m in modalities},
        "result": stored,
    }
    return NewRecord(sign_record(unsigned, private_key), details)


def parse_details(data: bytes) -> dict[str, Any]:
    """Stored details bytes -> dict; raises RecordError('bad-details') if unreadable."""
    try:
        details = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise RecordError("bad-details", f"stored details are not valid JSON: {error}") from error
    if not isinstance(details, dict) or not isinstance(details.get("commitment"), dict):
        raise RecordError("bad-details", "stored details have no commitment")
    return details


# ---------------------------------------------------------------- verification
@dataclass(frozen=True)
class Verification:
    status: str
    reason: str
    checks: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "checks": self.checks}


@dataclass(frozen=True)
class RecordEvidence:
    """What the node knows about one record id, gathered on the chain thread."""

    record: DiagnosisRecord | None  # from the best chain, or pending
    on_chain: bool
    merkle_proof: list[tuple[str, bytes]] | None = None
    merkle_root: bytes | None = None
    details: bytes | None = None
    creator: Member | None = None


def check_details(record: DiagnosisRecord, details_bytes: bytes) -> tuple[dict[str, bool], str | None]:
    """Recompute the commitment and the result digest; returns the checks and the first failure."""
    checks: dict[str, bool] = {}
    try:
        details = parse_details(details_bytes)
    except RecordError as error:
        return {"details_readable": False}, error.message
    checks["details_readable"] = True
    commitment = details["commitment"]
    try:
        checks["commitment_matches_chain"] = compute_details_digest(commitment) == record.details_digest
        checks["result_matches_commitment"] = compute_result_digest(details.get("result")) == commitment.get("result_digest")
    except (TypeError, ValueError):
        checks.setdefault("commitment_matches_chain", False)
        checks["result_matches_commitment"] = False
    checks["record_id_matches"] = commitment.get("record_id") == record.record_id.hex()
    failure = next((name for name, ok in checks.items() if not ok), None)
    return checks, failure


def verify_record(evidence: RecordEvidence, record_id: bytes) -> Verification:
    """Judge a record from its evidence (pure; the caller gathers the evidence)."""
    record = evidence.record
    if record is None:
        if evidence.details is not None:
            return Verification(STATUS_ORPHANED, "off-chain details exist but the record is neither on the best "
                                                 "chain nor pending")
        return Verification(STATUS_NOT_FOUND, f"no record {record_id.hex()} on the best chain or pending here")
    checks: dict[str, bool] = {}
    if evidence.creator is not None:
        checks["signature"] = is_signature_valid(evidence.creator.public_key, record.signature, RECORD_DOMAIN,
                                                 record.signing_bytes)
    if evidence.on_chain and evidence.merkle_proof is not None and evidence.merkle_root is not None:
        checks["merkle_proof"] = is_merkle_proof_valid(record.record_hash, evidence.merkle_proof, evidence.merkle_root)
    if evidence.details is None:
        if not all(checks.values()):
            return Verification(STATUS_TAMPERED, "the on-chain record fails its own checks", checks)
        return Verification(STATUS_NO_DETAILS, "the record is on chain, but its off-chain details are held by the "
                                               "hospital that created it; ask that node to verify", checks)
    detail_checks, failure = check_details(record, evidence.details)
    checks.update(detail_checks)
    failed = next((name for name, ok in checks.items() if not ok), None)
    if failed is not None:
        return Verification(STATUS_TAMPERED, _FAILURE_REASONS.get(failed, failed), checks)
    if not evidence.on_chain:
        return Verification(STATUS_PENDING, "the details match the record, which is waiting to be mined", checks)
    return Verification(STATUS_INTACT, "the off-chain details match the commitment in the signed, mined record",
                        checks)


_FAILURE_REASONS = {
    "signature": "the record's signature does not verify against its creator's key",
    "merkle_proof": "the record is not committed to by its block's Merkle root",
    "details_readable": "the stored off-chain details cannot be read",
    "commitment_matches_chain": "the stored off-chain details do not match the digest recorded on chain",
    "result_matches_commitment": "the stored result differs from the one committed to",
    "record_id_matches": "the stored details belong to another record",
}
