"""Federated rounds over the peer network (issue 15): propose, train locally, exchange, aggregate.

- ``setup_federated(app)`` adds the service when the config has a ``federated``
  section: it loads the shipped model of ``federated.modality`` and, when
  ``federated.data_dir`` is set, the site's pooled features (cached; in a thread).
- A member proposes a round (``propose_round``): a signed ``model_round`` message
  naming the base model, the current head digest, the training settings, the
  participants and a deadline. Every node relays it once.
- Each participant trains from the current head on its training split (an executor:
  never on the event loop) and sends a signed ``model_update``; every node relays
  each update once.
- At the deadline, or as soon as every participant has sent, each node screens and
  averages what it received (``node.federated_round.finalise_round``): the same
  updates give the same head digest on every node. A participant that never sends
  is excluded as ``no-update``; the round completes without it.
- Each site scores the aggregate on its own held-out split (``local_report``) and signs
  it. The proposal, each node's signed round result and each site's metrics go into
  the node's governance pool (``node.governance_pool``) and from there into blocks.
- Adoption is read from the best chain only (``node.federated_chain``), after every
  tip change: when the chain holds the round, its result and the sites' metrics and
  the rule holds there, the aggregate becomes the federation head (the next round
  trains from it), is stored by digest (``node.federated_heads``) and is served by the
  diagnostic plug-in for this modality; a diagnosis then records the served model id
  SHA-256(tflite SHA-256 || head digest). A reorg that removes the adoption serves
  the previous head again. No head is served without the chain saying so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from aiohttp import web

from consensus.crypto import is_signature_valid, sign
from consensus.entries import GovernanceEntry, RoundResult
from consensus.governance import RESULT_DOMAIN
from consensus.types import ChainParams
from diagnostics.auc import compute_auc
from diagnostics.federated import Head, Preconditioner, train_local
from diagnostics.federated_data import get_preconditioner, load_site_features
from diagnostics.model import LiteRTModel
from diagnostics.plugin import DiagnosticPlugin, HeadServingPlugin
from network.errors import ProtocolViolation
from network.model_messages import (METRICS_DOMAIN, MICRO, ROUND_DOMAIN, UPDATE_DOMAIN, ModelMetrics, ModelRound,
                                    ModelUpdate)
from network.peer import Peer
from network.service import PeerNetwork
from node.chain import ChainService
from node.federated_chain import ChainGovernance, compute_chain_governance
from node.federated_fetch import HeadFetcher
from node.federated_round import (MAX_PENDING_UPDATES, MAX_ROUNDS_KEPT, FederatedSettings, RoundState,
                                  apply_privacy, describe_privacy, finalise_round, make_round_result)
from node.auth import get_principal
from node.federated_heads import HEAD_STORE, HeadStore, HeadStoreError, StoredHead, serve_stored, setup_head_routes
from node.http import API_PREFIX, ApiError, json_reply
from node.identity import NodeIdentity
from node.keys import CHAIN, CONFIG, GENESIS, IDENTITY, NETWORK, PLUGIN
from node.results import AddResult

log = logging.getLogger("lungledger.federated")
FEDERATED: web.AppKey[FederatedService | None] = web.AppKey("federated")


@dataclass
class FaultInjection:
    """Misbehaviour for functional tests only (set on a running node by the test, never from config)."""

    scale: float = 1.0  # multiply the trained head (a poisoned update)
    delay_s: float = 0.0  # wait before training (a node that dies mid-round)
    auc_drop: float = 0.0  # lower the candidate AUC this site reports (a site that vetoes the aggregate)


@dataclass(frozen=True)
class SiteData:
    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]


class FederatedService:
    def __init__(self, network: PeerNetwork, chain: ChainService, params: ChainParams, identity: NodeIdentity,
                 settings: FederatedSettings, model: LiteRTModel, heads: HeadStore,
                 plugin: DiagnosticPlugin | None = None, clock: Callable[[], float] = time.time) -> None:
        self.network = network
        self.chain = chain
        self.params = params
        self.identity = identity
        self.settings = settings
        self.model = model
        self.clock = clock
        self.heads = heads
        self.plugin = plugin
        self.served: StoredHead | None = None  # the adopted head the plug-in serves (None: the built-in one)
        self._serving = asyncio.Lock()  # one reading of the chain (and serving of its head) at a time
        self.head = Head.create(model.card.head_weights.astype(np.float64), model.card.head_bias)
        self.builtin = self.head
        self.governance: ChainGovernance | None = None  # the best chain's rounds and adopted head, last read
        self.missing_head: str | None = None  # a head the chain adopted that this node does not hold
        self._chain_dirty = asyncio.Event()
        self.preconditioner: Preconditioner = get_preconditioner(model)
        self.site: SiteData | None = None
        self.rounds: dict[bytes, RoundState] = {}
        self.pending: dict[bytes, list[ModelUpdate]] = {}
        self.faults = FaultInjection()
        self.rounds_sent = 0
        self.rng = np.random.default_rng()  # fresh OS entropy: the privacy noise must not be predictable
        self.tasks: set[asyncio.Task[Any]] = set()
        network.add_handler(ModelRound, self.on_model_round)
        network.add_handler(ModelUpdate, self.on_model_update)
        network.add_handler(ModelMetrics, self.on_model_metrics)
        self.fetcher = HeadFetcher(network, int(self.builtin.weights.size), self.lookup_head, self.store_fetched)

    @property
    def model_id(self) -> bytes:
        return bytes.fromhex(self.model.card.model_id)

    async def load_site(self) -> None:
        if self.settings.data_dir is None or self.settings.cache_dir is None:
            return
        features = await asyncio.to_thread(load_site_features, self.model, self.settings.data_dir,
                                           self.settings.cache_dir)
        if self.settings.source is not None:
            features = features.select(lambda image: image.source == self.settings.source)
            if not features.images:
                raise ValueError(f"no images of source {self.settings.source!r} in {self.settings.data_dir}")
        split = features.split()
        self.site = SiteData(split["train"], split["validation"])
        log.info("federated site data: %d images (%d training) from %s", len(features.images),
                 len(split["train"][1]), self.settings.data_dir)

    async def restore_head(self) -> None:
        """At start-up: serve the head the stored best chain has adopted."""
        await self.sync_with_chain()

    async def on_blocks(self, results: Sequence[AddResult], source: Any) -> None:
        """Chain listener: after a tip change, read the adoption again from the best chain."""
        if any(result.tip_changed for result in results):
            self._chain_dirty.set()

    def follow_chain(self) -> None:
        self._spawn(self._follow_chain(), "federated-chain")

    async def _follow_chain(self) -> None:
        while True:
            await self._chain_dirty.wait()
            self._chain_dirty.clear()
            await self.sync_with_chain()

    async def sync_with_chain(self) -> None:
        """Derive every round's on-chain status and the adopted head from the best chain; serve that head."""
        async with self._serving:
            _, entries = await self.chain.get_best_entries()
            governance = compute_chain_governance(entries, self.settings.modality, self.model_id,
                                                  bytes.fromhex(self.builtin.digest()))
            await self._serve_digest(governance.head_digest.hex())  # served before any round reads as adopted
            self.governance = governance
            for state in self.rounds.values():
                chain_round = governance.rounds.get(state.round_id)
                state.adoption = None if chain_round is None else chain_round.verdict
            self.fetcher.want(self.missing_head)  # ask peers for a head the chain adopted and this node lacks

    async def _serve_digest(self, digest: str) -> None:
        """Serve the head with this digest (the built-in head when it is the built-in digest)."""
        builtin = digest == self.builtin.digest()
        if digest == self.head.digest() and (self.served is None) == builtin:
            self.missing_head = None
            return
        if builtin:
            self.head, self.served, self.missing_head = self.builtin, None, None
            if isinstance(self.plugin, HeadServingPlugin):
                self.plugin.serve_head(self.settings.modality, None)
            log.info("serving the built-in %s head (no adopted round on the best chain)", self.settings.modality)
            return
        stored = await asyncio.to_thread(self._find_head, digest)
        if stored is None:
            self.missing_head = digest
            log.warning("the best chain adopted head %s, which this node does not hold; not serving it", digest[:16])
            return
        await asyncio.to_thread(self.heads.save, stored)  # persisted first: every head a record names can be fetched
        self.head, self.missing_head = stored.head, None
        self.served = stored if serve_stored(self.plugin, stored) else None

    async def lookup_head(self, digest: str) -> Head | None:
        """A head this node holds with this digest (a peer's ``get_head``): a round's aggregate or a stored head."""
        for state in list(self.rounds.values()):
            if state.head is not None and state.head.digest() == digest:
                return state.head
        try:
            stored = await asyncio.to_thread(self.heads.load, digest)
        except HeadStoreError as error:
            log.error("stored head %s refused: %s", digest[:16], error)
            return None
        return None if stored is None else stored.head

    async def store_fetched(self, head: Head) -> None:
        """Keep a head fetched from a peer by digest, then read the chain again (it serves it if still adopted)."""
        governance = self.governance
        round_id = None if governance is None or governance.adopted_round is None else governance.adopted_round.hex()
        stored = StoredHead(self.settings.modality, self.model.card.model_id, head, round_id, int(self.clock() * 1000))
        try:
            await asyncio.to_thread(self.heads.save, stored, False)
        except (OSError, HeadStoreError) as error:
            log.error("fetched head %s not stored: %s", head.digest()[:16], error)
            return
        self._chain_dirty.set()

    def _find_head(self, digest: str) -> StoredHead | None:
        for state in self.rounds.values():
            if state.head is not None and state.head.digest() == digest:
                return StoredHead(self.settings.modality, self.model.card.model_id, state.head,
                                  state.round_id.hex(), int(self.clock() * 1000))
        try:
            return self.heads.load(digest)
        except HeadStoreError as error:
            log.error("stored head %s refused: %s", digest[:16], error)
            return None

    async def close(self) -> None:
        await self.fetcher.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ------------------------------------------------------------ proposing
    async def propose_round(self, participants: list[bytes] | None = None, duration_s: float | None = None,
                            number: int | None = None, quorum: int | None = None,
                            max_auc_drop: float | None = None) -> ModelRound:
        members = sorted(participants if participants is not None else self.params.members_by_id)
        settings = self.settings
        unsigned = ModelRound(
            self.identity.member_id, number if number is not None else len(self.rounds) + 1, settings.modality,
            self.model_id, bytes.fromhex(self.head.digest()), settings.epochs,
            round(settings.learning_rate * MICRO), round(settings.l2 * MICRO),
            int((self.clock() + (duration_s or settings.round_s)) * 1000), tuple(members), quorum or settings.quorum,
            round((settings.max_auc_drop if max_auc_drop is None else max_auc_drop) * MICRO))
        proposal = replace(unsigned, signature=sign(self.identity.private_key, ROUND_DOMAIN, unsigned.signed_bytes()))
        await self.accept_round(proposal, None)
        return proposal

    async def _to_chain(self, body: ModelRound | ModelMetrics | RoundResult, own: bool) -> None:
        """Into the governance pool, for the miners (ours: always; a peer's: if valid and the pool has room)."""
        result = await self.chain.add_entries([GovernanceEntry.of(body)], own=own)
        if result.error is not None:
            log.warning("governance entry not pooled: %s", result.error)

    # ------------------------------------------------------------ receiving
    async def on_model_round(self, peer: Peer, message: ModelRound) -> None:
        await self.accept_round(message, peer.member_id)

    async def on_model_update(self, peer: Peer, message: ModelUpdate) -> None:
        await self.accept_update(message, peer.member_id)

    async def on_model_metrics(self, peer: Peer, message: ModelMetrics) -> None:
        self.accept_metrics(message, peer.member_id)

    def _check_signature(self, member_id: bytes, domain: bytes, signed: bytes, signature: bytes, what: str) -> None:
        member = self.params.members_by_id.get(member_id)
        if member is None:
            raise ProtocolViolation("unknown-member", f"{what} from a non-member")
        if not is_signature_valid(member.public_key, signature, domain, signed):
            raise ProtocolViolation("bad-signature", f"{what} signature does not verify")

    async def accept_round(self, proposal: ModelRound, source: bytes | None) -> None:
        round_id = proposal.round_id
        if round_id in self.rounds:
            return
        self._check_signature(proposal.proposer, ROUND_DOMAIN, proposal.signed_bytes(), proposal.signature, "round")
        if any(member not in self.params.members_by_id for member in proposal.participants):
            raise ProtocolViolation("unknown-member", "round lists a participant that is not a member")
        state = RoundState(proposal, self._get_base(proposal))
        if state.base is None:
            state.status = "incompatible: " + self._describe_mismatch(proposal)
        self._remember(state)
        self.network.broadcast(proposal, skip=source)
        await self._to_chain(proposal, own=source is None)
        log.info("round %s (%d) from %s: %s", round_id.hex()[:12], proposal.number, proposal.proposer.hex()[:8],
                 state.status)
        if state.base is None:
            return
        self._spawn(self._finalise_at_deadline(state), "federated-deadline")
        if self.identity.member_id in proposal.participants and self.site is not None:
            self._spawn(self._train_and_send(state), "federated-train")
        for update in self.pending.pop(round_id, []):
            await self.accept_update(update, None)

    def _get_base(self, proposal: ModelRound) -> Head | None:
        compatible = (proposal.modality == self.settings.modality and proposal.base_model_id == self.model_id
                      and proposal.head_digest.hex() == self.head.digest())
        return self.head if compatible else None

    def _describe_mismatch(self, proposal: ModelRound) -> str:
        if proposal.modality != self.settings.modality:
            return f"modality {proposal.modality} (this node federates {self.settings.modality})"
        if proposal.base_model_id != self.model_id:
            return "another base model"
        return "another head than this node's"

    def _remember(self, state: RoundState) -> None:
        self.rounds[state.round_id] = state
        while len(self.rounds) > MAX_ROUNDS_KEPT:
            del self.rounds[next(iter(self.rounds))]

    async def accept_update(self, update: ModelUpdate, source: bytes | None) -> None:
        state = self.rounds.get(update.round_id)
        if state is None:
            waiting = self.pending.setdefault(update.round_id, [])
            if sum(len(items) for items in self.pending.values()) < MAX_PENDING_UPDATES:
                waiting.append(update)
            return
        digest = update.digest
        if digest in state.updates:
            return
        self._check_signature(update.member_id, UPDATE_DOMAIN, update.signed_bytes(), update.signature, "update")
        if update.member_id not in state.proposal.participants:
            log.warning("ignoring an update from %s: not a participant of round %s", update.member_id.hex()[:8],
                        update.round_id.hex()[:12])
            return
        if state.status != "collecting":
            return  # late: the round is decided without it
        state.updates[digest] = update
        self.network.broadcast(update, skip=source)
        if state.has_every_update():
            self._finalise(state)

    # ------------------------------------------------------------ training and aggregation
    async def _train_and_send(self, state: RoundState) -> None:
        if self.faults.delay_s > 0:
            await asyncio.sleep(self.faults.delay_s)
        site, base = self.site, state.base
        if site is None or base is None:
            return
        config = self.settings.local_config(state.proposal)
        trained = await asyncio.to_thread(train_local, base, *site.train, config, self.preconditioner)
        trained = apply_privacy(trained, base, self.settings, self.rng)
        self.rounds_sent += 1
        if self.faults.scale != 1.0:
            trained = Head.create(trained.weights * self.faults.scale, trained.bias * self.faults.scale)
        current = compute_auc(site.validation[1], base.logits(site.validation[0]))
        metrics = (("heldout_auc_current", _to_micro(current)),)
        unsigned = ModelUpdate(state.round_id, self.identity.member_id, trained.to_bytes(), len(site.train[1]),
                               metrics)
        update = replace(unsigned, signature=sign(self.identity.private_key, UPDATE_DOMAIN, unsigned.signed_bytes()))
        await self.accept_update(update, None)

    async def _finalise_at_deadline(self, state: RoundState) -> None:
        await asyncio.sleep(max(0.0, state.proposal.deadline_ms / 1000 - self.clock()))
        self._finalise(state)

    def _finalise(self, state: RoundState) -> None:
        if state.status != "collecting":
            return
        finalise_round(state)
        log.info("round %s %s: head %s, contributors %d, excluded %s", state.round_id.hex()[:12], state.status,
                 None if state.head is None else state.head.digest()[:16], len(state.contributors), state.excluded)
        if state.head is None or state.base is None:
            return
        if self.missing_head == state.head.digest():
            self._chain_dirty.set()  # the chain adopted this aggregate before this node had computed it: serve it now
        result = make_round_result(state, self.identity.member_id)
        if result is not None:
            state.result = replace(result, signature=sign(self.identity.private_key, RESULT_DOMAIN,
                                                          result.signed_bytes()))
            self._spawn(self._to_chain(state.result, own=True), "federated-result")
        if self.site is not None and self.identity.member_id in state.proposal.participants:
            x, y = self.site.validation
            current, candidate = compute_auc(y, state.base.logits(x)), compute_auc(y, state.head.logits(x))
            candidate = max(0.0, candidate - self.faults.auc_drop) if np.isfinite(candidate) else candidate
            state.local_report = {"current_auc": _finite(current), "candidate_auc": _finite(candidate)}
            unsigned = ModelMetrics(state.round_id, self.identity.member_id, bytes.fromhex(state.head.digest()),
                                    _to_micro(current), _to_micro(candidate))
            self.accept_metrics(replace(unsigned, signature=sign(self.identity.private_key, METRICS_DOMAIN,
                                                                 unsigned.signed_bytes())), None)

    def accept_metrics(self, report: ModelMetrics, source: bytes | None) -> None:
        state = self.rounds.get(report.round_id)
        if state is None or report.member_id in state.reports:
            return
        self._check_signature(report.member_id, METRICS_DOMAIN, report.signed_bytes(), report.signature, "metrics")
        if report.member_id not in state.proposal.participants:
            return
        state.reports[report.member_id] = report
        self.network.broadcast(report, skip=source)
        self._spawn(self._to_chain(report, own=source is None), "federated-metrics")

    def get_status(self) -> dict[str, Any]:
        return {"modality": self.settings.modality, "model_id": self.model.card.model_id,
                "head_digest": self.head.digest(),
                "served": None if self.served is None else {"head_digest": self.served.digest,
                                                            "served_model_id": self.served.served_model_id},
                "site_images": None if self.site is None else
                int(len(self.site.train[1]) + len(self.site.validation[1])),
                "privacy": describe_privacy(self.settings, self.rounds_sent),
                "rounds": [self._describe(state) for state in reversed(self.rounds.values())],
                "chain": self._describe_chain()}

    def _describe(self, state: RoundState) -> dict[str, Any]:
        chain_round = None if self.governance is None else self.governance.rounds.get(state.round_id)
        return {**state.to_json(), "chain": None if chain_round is None else chain_round.to_json()}

    def _describe_chain(self) -> dict[str, Any]:
        governance = self.governance
        if governance is None:
            return {"head_digest": None, "adopted_round": None, "missing_head": self.missing_head,
                    "head_fetch": self.fetcher.describe(), "rounds": []}
        return {"head_digest": governance.head_digest.hex(),
                "adopted_round": None if governance.adopted_round is None else governance.adopted_round.hex(),
                "missing_head": self.missing_head, "head_fetch": self.fetcher.describe(),
                "rounds": [chain_round.to_json() for chain_round in reversed(governance.rounds.values())]}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _to_micro(value: float) -> int:
    return -1 if not np.isfinite(value) else round(value * MICRO)


async def federated_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    settings = FederatedSettings.from_section(config.federated, config.data_dir)
    model = await asyncio.to_thread(LiteRTModel, config.models_dir / settings.modality)
    service = FederatedService(app[NETWORK], app[CHAIN], app[GENESIS].params, app[IDENTITY], settings, model,
                               app[HEAD_STORE], app[PLUGIN])
    await service.restore_head()
    await service.load_site()
    app[CHAIN].listeners.append(service.on_blocks)
    service.follow_chain()
    app[FEDERATED] = service
    yield
    app[CHAIN].listeners.remove(service.on_blocks)
    await service.close()


async def get_federated(request: web.Request) -> web.Response:
    service = request.app.get(FEDERATED)
    if service is None:
        return json_reply({"enabled": False, "rounds": []})
    return json_reply({"enabled": True, **service.get_status()})


MAX_ROUND_BODY_BYTES = 1024
MAX_ROUND_DURATION_S = 24 * 3600


async def post_federated_round(request: web.Request) -> web.Response:
    """Propose a round (an administrator or the node's API token).

    Body (all optional): ``{"duration_s": s, "quorum": n, "participants": [member id hex, ...]}``;
    participants default to every member.
    """
    principal = get_principal(request)
    if principal is None or not principal.sees_everything:
        raise ApiError(403, "not-an-administrator", "only an administrator or the node's API token may propose a round")
    service = request.app.get(FEDERATED)
    if service is None:
        raise ApiError(409, "federated-off", "this node has no federated section in its config")
    body = await request.content.read(MAX_ROUND_BODY_BYTES + 1)
    try:
        options = json.loads(body) if body.strip() else {}
        duration = float(options.get("duration_s", service.settings.round_s))
        quorum = options.get("quorum")
        named = options.get("participants")
        participants = None if named is None else [bytes.fromhex(str(member)) for member in named][:64]
        if participants is not None and any(member not in service.params.members_by_id for member in participants):
            raise ValueError("every participant must be a member id of this chain")
        if not isinstance(options, dict) or len(body) > MAX_ROUND_BODY_BYTES or not 1 <= duration <= MAX_ROUND_DURATION_S \
                or not (quorum is None or (type(quorum) is int and 1 <= quorum <= 64)):
            raise ValueError("duration_s must be 1..86400 seconds and quorum 1..64")
    except (ValueError, TypeError, AttributeError) as error:
        raise ApiError(400, "bad-round", f"round options: {error}") from error
    proposal = await service.propose_round(participants=participants, duration_s=duration, quorum=quorum)
    return json_reply(service.rounds[proposal.round_id].to_json(), status=202)


def setup_federated(app: web.Application) -> None:
    """Federated rounds when the config has a ``federated`` section (after the peer network starts)."""
    app.router.add_get(f"{API_PREFIX}/federated", get_federated)
    app.router.add_post(f"{API_PREFIX}/federated/rounds", post_federated_round)
    setup_head_routes(app)
    if app[CONFIG].federated:
        app.cleanup_ctx.append(federated_context)
    else:
        app[FEDERATED] = None

