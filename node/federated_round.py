"""One federated round as a node sees it: settings, the round's state and its deterministic outcome.

No I/O here: ``node/federated.py`` feeds proposals and updates in and calls
:func:`finalise_round` at the deadline (or once every participant has sent);
the outcome depends only on the proposal, the updates received and the base
head, so every node that received the same updates computes the same digest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from consensus.governance import RoundResult
from diagnostics.federated import (FederatedError, Head, LocalConfig, Update, aggregate,
                                   compute_epsilon, privatise, screen_updates)
from network.model_messages import MICRO, ModelMetrics, ModelRound, ModelUpdate

DEFAULT_ROUND_S = 120.0
DEFAULT_ADOPTION_S = 60.0
MAX_ROUNDS_KEPT = 64
MAX_PENDING_UPDATES = 256  # updates that arrived before their round's proposal


@dataclass(frozen=True)
class FederatedSettings:
    """The node's ``federated`` config section."""

    data_dir: Path | None = None  # the site's labelled folder (cancer/, normal/, labels.csv); None: observe only
    modality: str = "xray"
    source: str | None = None  # only the images whose labels.csv source_dataset is this (a testnet's sites)
    cache_dir: Path | None = None  # default: <node data_dir>/federated-cache
    epochs: int = 20
    learning_rate: float = 1.0
    l2: float = 0.03
    quorum: int = 2
    max_auc_drop: float = 0.02
    round_s: float = DEFAULT_ROUND_S
    adoption_s: float = DEFAULT_ADOPTION_S  # kept for old configs; unused: the chain's window decides (federated_chain)
    clip_norm: float = 0.0  # > 0: clip this site's change of the head to this L2 norm before sending
    noise_multiplier: float = 0.0  # > 0 (with clip_norm): add N(0, (z * clip_norm)^2) per coordinate

    @classmethod
    def from_section(cls, section: Mapping[str, Any], node_data_dir: Path) -> FederatedSettings:
        known = set(cls.__dataclass_fields__)
        unknown = set(section) - known
        if unknown:
            raise ValueError(f"unknown keys in the federated config section: {sorted(unknown)}")
        values = dict(section)
        for key in ("data_dir", "cache_dir"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        settings = cls(**values)
        if settings.modality not in ("ct", "xray"):
            raise ValueError(f"federated.modality must be ct or xray, not {settings.modality!r}")
        if settings.clip_norm < 0 or settings.noise_multiplier < 0 or (settings.noise_multiplier > 0
                                                                        and settings.clip_norm <= 0):
            raise ValueError("federated.noise_multiplier needs a positive federated.clip_norm")
        if settings.cache_dir is None:
            settings = cls(**{**values, "cache_dir": node_data_dir / "federated-cache"})
        return settings

    def local_config(self, proposal: ModelRound) -> LocalConfig:
        """The round's own training settings (the proposal's, not this node's)."""
        return LocalConfig(epochs=proposal.epochs, learning_rate=proposal.learning_rate_micro / MICRO,
                           l2=proposal.l2_micro / MICRO)


@dataclass
class RoundState:
    """What this node holds about one round."""

    proposal: ModelRound
    base: Head | None  # the head the round trains from (None: this node cannot check it)
    status: str = "collecting"  # collecting -> aggregated | failed | incompatible: ...
    updates: dict[bytes, ModelUpdate] = field(default_factory=dict)  # by update digest
    head: Head | None = None
    contributors: dict[str, str] = field(default_factory=dict)  # member id hex -> update digest hex
    excluded: dict[str, str] = field(default_factory=dict)  # member id hex -> reason code
    local_report: dict[str, float | None] | None = None
    reports: dict[bytes, ModelMetrics] = field(default_factory=dict)  # by member id (first one counts)
    adoption: str | None = None  # the best chain's verdict (node.federated_chain); None: undecided there
    result: RoundResult | None = None  # this node's signed model-update record of the round

    @property
    def round_id(self) -> bytes:
        return self.proposal.round_id

    def senders(self) -> set[bytes]:
        return {update.member_id for update in self.updates.values()}

    def has_every_update(self) -> bool:
        return set(self.proposal.participants) <= self.senders()

    def to_json(self) -> dict[str, Any]:
        proposal = self.proposal
        return {
            "round_id": self.round_id.hex(), "number": proposal.number, "modality": proposal.modality,
            "proposer": proposal.proposer.hex(), "base_model_id": proposal.base_model_id.hex(),
            "base_head_digest": proposal.head_digest.hex(), "deadline_ms": proposal.deadline_ms,
            "participants": [member.hex() for member in proposal.participants], "status": self.status,
            "head_digest": None if self.head is None else self.head.digest(),
            "contributors": dict(self.contributors), "excluded": dict(self.excluded),
            "local_report": self.local_report, "adoption": self.adoption,
            "result_record": None if self.result is None else {
                "record_hash": self.result.record_hash.hex(), "creator": self.result.creator.hex(),
                "head_digest": self.result.head_digest.hex(),
                "contributors": [[member.hex(), digest.hex()] for member, digest in self.result.contributors],
                "excluded": [[member.hex(), reason] for member, reason in self.result.excluded]},
            "reports": {member.hex(): {"current_auc": _from_micro(report.current_auc_micro),
                                       "candidate_auc": _from_micro(report.candidate_auc_micro)}
                        for member, report in sorted(self.reports.items())},
        }


def decode_update(message: ModelUpdate) -> Update:
    """Wire update -> core update; bytes that are not float64 values make an empty (bad-shape) head."""
    values = np.frombuffer(message.head, dtype="<f8") if message.head and len(message.head) % 8 == 0 \
        else np.zeros(0)
    head = Head.create(values[:-1], float(values[-1])) if values.size else Head.create([], math.nan)
    return Update(message.member_id.hex(), head, message.sample_count, {name: value / MICRO
                                                                          for name, value in message.metrics})


def finalise_round(state: RoundState) -> None:
    """Screen the received updates, FedAvg the rest, record who contributed and who was excluded why."""
    if state.status != "collecting" or state.base is None:
        return
    participants = {member.hex() for member in state.proposal.participants}
    updates = [decode_update(message) for message in state.updates.values()
               if message.member_id.hex() in participants]
    screening = screen_updates(updates, state.base)
    state.excluded = dict(screening.excluded)
    for member in sorted(participants - {update.member_id for update in updates}):
        state.excluded[member] = "no-update"
    try:
        state.head = aggregate(screening.accepted)
    except FederatedError as error:
        state.status = f"failed: {error.code}"
        return
    digests = {message.member_id.hex(): message.digest.hex() for message in state.updates.values()}
    state.contributors = {update.member_id: digests[update.member_id] for update in screening.accepted}
    state.status = "aggregated"


def _from_micro(value: int) -> float | None:
    return None if value < 0 else value / MICRO


def make_round_result(state: RoundState, creator: bytes) -> RoundResult | None:
    """The model-update record of an aggregated round (unsigned): head digest, contributors' digests, exclusions."""
    if state.head is None:
        return None
    return RoundResult(state.round_id, creator, bytes.fromhex(state.head.digest()),
                       tuple(sorted((bytes.fromhex(member), bytes.fromhex(digest))
                                    for member, digest in state.contributors.items())),
                       tuple(sorted((bytes.fromhex(member), reason) for member, reason in state.excluded.items())))


PRIVACY_DELTA = 1e-5


def apply_privacy(trained: Head, base: Head, settings: FederatedSettings, rng: np.random.Generator) -> Head:
    """The optional clipping + Gaussian noise of this site's update (docs/FEDERATED.md)."""
    if settings.clip_norm <= 0:
        return trained
    return privatise(trained, base, settings.clip_norm, settings.noise_multiplier, rng)


def describe_privacy(settings: FederatedSettings, rounds_sent: int) -> dict[str, Any]:
    """What this site has spent: site-level (epsilon, delta) by the zCDP accountant; epsilon None = no guarantee."""
    epsilon = compute_epsilon(settings.noise_multiplier, rounds_sent, PRIVACY_DELTA) \
        if settings.clip_norm > 0 and settings.noise_multiplier > 0 else None
    return {"clip_norm": settings.clip_norm, "noise_multiplier": settings.noise_multiplier,
            "rounds_sent": rounds_sent, "epsilon": epsilon, "delta": PRIVACY_DELTA,
            "accountant": "zCDP (Bun & Steinke 2016), site level, per site"}
