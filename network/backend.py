"""What the network needs from the chain: a small protocol the node implements.

network/ never imports node/; node/p2p.py adapts the ChainService to this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from consensus.blocktree import ChainView
from consensus.errors import ValidationError
from consensus.types import Block, ChainParams, DiagnosisRecord

FailureKind = Literal["invalid", "missing-parent", "duplicate"]


@dataclass(frozen=True)
class AcceptedBlock:
    block_hash: bytes
    height: int
    tip_changed: bool  # the best tip moved (to this block or, by its arrival, to another branch): announce it


@dataclass(frozen=True)
class ConnectResult:
    """Outcome of handing a batch to the chain: the accepted prefix, then at most one failure."""

    accepted: list[AcceptedBlock] = field(default_factory=list)
    failed_hash: bytes | None = None
    failure: FailureKind | None = None
    error: ValidationError | None = None


AcceptListener = Callable[[Sequence[AcceptedBlock], Any], Awaitable[None]]


@dataclass(frozen=True)
class RecordsResult:
    """Outcome of offering relayed records to the pending pool.

    ``accepted``: new to the pool (relay them on); ``ignored``: already pending or on the best chain;
    ``refused``: no room in the pool, by reason in ``refused_by`` (``pending-full``, ``pending-share-full``:
    the creator's share of the pool), not the sender's fault. ``error``: the first record breaking a
    consensus rule (it and the rest of the batch did not enter): the sender's fault.
    """

    accepted: list[DiagnosisRecord] = field(default_factory=list)
    ignored: int = 0
    refused: int = 0
    error: ValidationError | None = None
    refused_by: dict[str, int] = field(default_factory=dict)


RecordsListener = Callable[[Sequence[DiagnosisRecord], Any], None]  # newly pending records and their source


class ChainBackend(Protocol):
    @property
    def chain_id(self) -> bytes: ...

    @property
    def params(self) -> ChainParams: ...

    @property
    def view(self) -> ChainView:
        """The chain as of its last commit (immutable): read it once where two values must agree."""
        ...

    @property
    def tip_hash(self) -> bytes: ...

    @property
    def height(self) -> int: ...

    def has_block(self, block_hash: bytes) -> bool: ...

    def get_height_of(self, block_hash: bytes) -> int | None: ...

    def get_locator(self) -> list[bytes]: ...

    async def get_headers_after(self, locator: Sequence[bytes], limit: int) -> list[bytes]: ...

    async def get_blocks(self, hashes: Sequence[bytes]) -> list[bytes | None]: ...

    async def add_blocks(self, blocks: Sequence[Block], source: Any) -> ConnectResult: ...

    def subscribe(self, listener: AcceptListener) -> None: ...

    async def add_records(self, records: Sequence[DiagnosisRecord], source: Any) -> RecordsResult:
        """Validate relayed records and admit the new ones to the pending pool (off the event loop)."""
        ...

    async def get_pending_records(self, limit: int) -> list[DiagnosisRecord]: ...

    def subscribe_records(self, listener: RecordsListener) -> None:
        """``listener(records, source)`` after each commit that makes records pending (source None: ours)."""
        ...
