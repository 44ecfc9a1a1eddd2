"""Golden bytes: every chain and wire type encodes exactly as the hand-written encoders did.

The digests below were taken from the per-type ``to_fields`` of commit b7fd616, before the
declarative field tables replaced them; those of the newer types (records, model_round,
model_update, model_metrics, the round result, and their signed bytes, ids and digests) from
their hand-written encoders before issue 11 converted them (records: the encoder of 3815b92).
A change here is a change of the wire or of block hashes, and needs a protocol version, not a
new golden value.

1. Each example is packed with ``to_fields`` and compared with its recorded SHA-256.
2. Each example decodes back from those bytes to an equal object.
3. The derived bytes (record signing bytes, the parameters hash) are unchanged too.
4. Every type's field table names exactly its attributes, and its decoder is strict: wrong arity,
   a bool for an int, an out-of-range int, a str for bytes, oversized bytes, too many items, a
   fixed tuple item (a metric, a contributor) of the wrong arity or types.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from consensus.encoding import Bin, Int, ListOf, Str, TupleOf, pack, unpack
from consensus.errors import ValidationError
from consensus.governance import GovernanceEntry, RoundResult
from consensus.types import Block, BlockHeader, ChainParams, DiagnosisRecord, Member
from network.codec import decode_message, encode_message
from network.messages import (
    Announce, Auth, Blocks, GetBlocks, GetHeaders, GetPeers, Headers, Hello, NotFound, PeerAddress, Peers, Ping, Pong,
    Records,
)
from network.model_messages import GetHead, HeadNotFound, HeadReply, ModelMetrics, ModelRound, ModelUpdate

H1 = bytes(range(32))
H2 = bytes(range(32, 64))
MEMBER_ID = bytes(range(100, 116))
SIGNATURE = bytes(range(64, 128))

MEMBERS = (Member(bytes(range(32)), "St. Anna"), Member(bytes(range(1, 33)), "Hôpital Nord"))
PARAMS = ChainParams("lungledger-golden", 1_700_000_000_000, 3, 144, MEMBERS)
RECORD_ONE = DiagnosisRecord(
    record_id=bytes(range(16)), member_id=MEMBER_ID, created_ms=1_700_000_000_123, modalities=("ct",),
    image_digests=(H1,), model_ids=(H2,), probabilities_ppm=(731_000,), fused_ppm=731_000,
    label="affected", risk_level="High", details_digest=H2, signature=SIGNATURE,
)
RECORD_TWO = DiagnosisRecord(
    record_id=bytes(range(1, 17)), member_id=MEMBER_ID, created_ms=2**40, modalities=("ct", "xray"),
    image_digests=(H1, H2), model_ids=(H2, H1), probabilities_ppm=(0, 1_000_000), fused_ppm=500_000,
    label="normal", risk_level="Low", details_digest=H1, signature=SIGNATURE,
)
HEADER = BlockHeader(height=70_000, prev_hash=H1, merkle_root=H2, timestamp_ms=1_700_000_001_000, difficulty=4,
                     miner_id=MEMBER_ID, nonce=2**63 + 5)
BLOCK = Block(header=HEADER, signature=SIGNATURE, records=(RECORD_ONE, RECORD_TWO))
GENESIS = Block(header=BlockHeader(0, bytes(32), H2, 1, 0, bytes(16), 0), signature=b"", records=())
OTHER_ID = bytes(range(200, 216))
MODEL_ROUND = ModelRound(
    proposer=MEMBER_ID, number=7, modality="xray", base_model_id=H1, head_digest=H2, epochs=20,
    learning_rate_micro=1_000_000, l2_micro=30_000, deadline_ms=1_800_000_000_000, participants=(MEMBER_ID, OTHER_ID),
    quorum=2, max_auc_drop_micro=20_000, signature=SIGNATURE,
)
MODEL_UPDATE = ModelUpdate(
    round_id=H1, member_id=OTHER_ID, head=bytes(range(200)) * 3, sample_count=1234,
    metrics=(("heldout_auc_current", 650_000), ("loss", -1_500_000), ("x", 10**15)), signature=SIGNATURE,
)
MODEL_METRICS = ModelMetrics(round_id=H2, member_id=MEMBER_ID, head_digest=H1, current_auc_micro=-1,
                             candidate_auc_micro=1_000_000, signature=SIGNATURE)
ROUND_RESULT = RoundResult(
    round_id=H1, creator=MEMBER_ID, head_digest=H2, contributors=((MEMBER_ID, H1), (OTHER_ID, H2)),
    excluded=((bytes(16), "norm-outlier"), (bytes(range(16)), "no-update")), signature=SIGNATURE,
)
# A block with governance entries: the entries are a fourth array, present only when there are entries
# (so BLOCK and GENESIS above keep their bytes). Kept out of CONTAINERS: dropping its last field gives a
# valid block without entries, which the strictness test below would count as lenient.
ENTRIES = (GovernanceEntry.of(MODEL_ROUND), GovernanceEntry.of(ROUND_RESULT), GovernanceEntry.of(MODEL_METRICS))
BLOCK_WITH_ENTRIES = Block(header=HEADER, signature=SIGNATURE, records=(RECORD_ONE,), entries=ENTRIES)

CONTAINERS: dict[str, Any] = {
    "member": MEMBERS[1],
    "params": PARAMS,
    "record-one": RECORD_ONE,
    "record-two": RECORD_TWO,
    "header": HEADER,
    "block": BLOCK,
    "genesis": GENESIS,
    "round-result": ROUND_RESULT,
}
MESSAGES: dict[str, Any] = {
    "hello": Hello(3, H1, MEMBER_ID, H2, 8601, 123_456, "lungledger/0.1", 1),
    "auth": Auth(SIGNATURE),
    "announce": Announce(H1, 2**32),
    "get_headers": GetHeaders((H1, H2)),
    "headers": Headers((HEADER.encoded, GENESIS.header.encoded)),
    "get_blocks": GetBlocks((H1,)),
    "blocks": Blocks((BLOCK.encoded,)),
    "not_found": NotFound((H2, H1)),
    "get_peers": GetPeers(),
    "peers": Peers((PeerAddress("10.0.0.7", 8601, MEMBER_ID), PeerAddress("node.example", 65535, bytes(16)))),
    "ping": Ping(2**64 - 1),
    "pong": Pong(0),
    "records": Records((RECORD_ONE.encoded, RECORD_TWO.encoded)),
    "model_round": MODEL_ROUND,
    "model_update": MODEL_UPDATE,
    "model_metrics": MODEL_METRICS,
    "get_head": GetHead(H1),
    "head": HeadReply(H2, bytes(range(24))),
    "head_not_found": HeadNotFound(H1),
}

GOLDEN: dict[str, str] = {
    "block-with-entries": "dd2742dee474e0ae1ce51733b948301949bc804e806ed685929749115f2f7bf9",
    "block-with-entries-leaves": "c52d5bce0b66d18b323483a2b93315a44dc7b7bcac060caf10217aee55913edb",
    "block": "deffd86e44a0c376ae7822c536b29f3fbfbe4a54b685ddd507b0b103afef7487",
    "genesis": "ed0d2f78bdf1bfbb7457e1c56337cb35388be81c16cc1e1e5ba8bdf2f90df368",
    "header": "7da4e7b60e5c288dcb8ab692c608c5ef8235d796eeff85e6ebcb4338b171c03b",
    "member": "5d8beefd086cc465b69411dcb0f2536ca9b43224ece26e2bc4f0d180c9dcbfb6",
    "msg-announce": "21ff3234721591d49fe390aa8006e98b7b897d4fe58edd9de7462f180cd35890",
    "msg-auth": "670c03136c36e2c6ae521e49743c5a5b61e3a311aa0c538caa7a9fcb7725980b",
    "msg-blocks": "6e01e3c1067876865f24daf93e5b560842512985c81aece73ad6e3ada30e5e24",
    "msg-get_blocks": "fb98a737b1be2e2126f5b8b815191f0874696166e2f08e0a376953252a991912",
    "msg-get_head": "3440ed690c97e6e38bcfdfbefce505f8d7ad62f54914500333ffeddd4ca555d7",
    "msg-get_headers": "35012b8312ecf043c1fd427dcf1a745f1dcdc97d7cf292e6bcd8ec55efa9e4b5",
    "msg-get_peers": "c2b5c851f2d795d9ee2f1b55f7142c38f9d2ab9aafd067a04842157704e6c260",
    "msg-head": "ee647172e0048d7f6ba14b9df2439f41f045541f040751a3e8b181888ce12d12",
    "msg-head_not_found": "cf415a6110080aa3f0456f211719eec9e3a637ae0591de7e50a2c170770eb97c",
    "msg-headers": "f05c12641b2ae1f58cf591fad837a71dfc9934f7870b722367b86debc9b9e9a8",
    "msg-hello": "e71ccf1e0a5a59a8e5bf6f6d62d041badecf0e3c7e0fcb565e7873dd3d9d966c",
    "msg-model_metrics": "eec3552dc27f5cf22b27abe623273613a6d7eea5b38245e38f7ea45eb9da401d",
    "msg-model_metrics-digest": "f4b2ccf6b7387d12a306136dc91a8a6dcf79484b7fdb90009d6ac03ba848071b",
    "msg-model_round": "d70eefa5f189cf86b3c4d8359e8a91398c2eb78ba2f01ea69de8f963c98b6b41",
    "msg-model_round-id": "8e18971da8b5f4ddeb9dcab75a11ca993a0396aaa988ed6e1e5a9cae2b817d12",
    "msg-model_update": "c369cd519e01f8287b23936b07ff67ebc08b5f7bcab5cde351c38b00514b0148",
    "msg-model_update-digest": "6abfa5f79adb09dac55b5df40de95ca644139d0318d6a16ff82aa17d5187f82c",
    "msg-not_found": "3cc76614d2e438cb9c486546d38f0f510ad23a471854f77280608677eaee54ba",
    "msg-peers": "53c9b48c960395e6eaa9eec4c144eb46672938f27721621eb7ee2f73b1e18543",
    "msg-ping": "4f2348c784c48397a90e3c6faf08d000821469a9f4630f0f86a8295a29ad7c8e",
    "msg-pong": "963b506fe5b9def770dfcd40cf1e94042705813508e5ebebc9153d9b8ee7dd30",
    "msg-records": "a9f2c3965ed5482afca4054ad81b39d602eccb8bfa5217e6a1d2811c40fe689c",
    "params": "6ed09f3bd4bd9c3a5b5db3f6641b3c315c4a281f9cc6a8d00a200aaa73ae1132",
    "params-hash": "029ff763254cd6fc6560765f84db937664fe2e712fa8d9b1aceb2de37dfb4011",
    "record-one": "3a4e95166f2b9d6c3544e62350a0ec4ca822567ad322c1d78b4647b1c798428b",
    "record-one-signing": "45d81741c019344d83064ca3b272bb6674e907ddbc90759c10c39d6cc8abfc0f",
    "record-two": "3c41697884f2bdce77d093b8d197c8350a5c1a0c5a4044b6a9871042cef1738e",
    "round-result": "8322a8acdccf4e132e6c3d2a3c5cab817d89953e859f6b233108d312c290dc00",
    "round-result-hash": "836f976ad00ee78efa306f20a1c3dbd43c9abdaf9310e93f90384dc752dc9d87",
    "round-result-signing": "6bd6492e5f1b12942c9ea34aedfdfc04152861a517004818fde038b7baf16dc2",
}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _encodings() -> dict[str, bytes]:
    found = {name: pack(value.to_fields()) for name, value in CONTAINERS.items()}
    found.update({f"msg-{name}": encode_message(message) for name, message in MESSAGES.items()})
    found["record-one-signing"] = RECORD_ONE.signing_bytes
    found["params-hash"] = PARAMS.params_hash
    found["round-result-signing"] = ROUND_RESULT.signed_bytes()
    found["round-result-hash"] = ROUND_RESULT.record_hash
    found["block-with-entries"] = BLOCK_WITH_ENTRIES.encoded
    found["block-with-entries-leaves"] = b"".join(BLOCK_WITH_ENTRIES.leaf_hashes)
    found["msg-model_round-id"] = MODEL_ROUND.round_id
    found["msg-model_update-digest"] = MODEL_UPDATE.digest
    found["msg-model_metrics-digest"] = MODEL_METRICS.digest
    return found


@pytest.mark.parametrize("name", sorted(_encodings()))
def test_bytes_are_unchanged(name: str) -> None:
    assert _digest(_encodings()[name]) == GOLDEN[name]


def test_every_type_is_covered() -> None:
    assert set(GOLDEN) == set(_encodings())


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_containers_decode_back(name: str) -> None:
    value = CONTAINERS[name]
    data = pack(value.to_fields())
    if isinstance(value, Block):
        assert Block.decode(data) == value
    elif isinstance(value, BlockHeader):
        assert BlockHeader.decode(data) == value
    else:
        assert type(value).from_fields(unpack(data, 1 << 20)) == value


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_messages_decode_back(name: str) -> None:
    message = MESSAGES[name]
    assert decode_message(encode_message(message)) == message


ALL_TYPES = [type(v) for v in CONTAINERS.values()] + [type(m) for m in MESSAGES.values()] + [PeerAddress]


@pytest.mark.parametrize("cls", sorted(set(ALL_TYPES), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_field_table_names_every_attribute(cls: Any) -> None:
    extra = ["entries"] if cls is Block else []  # the optional fourth array (Block.ENTRIES)
    assert sorted([f.name for f in cls.FIELDS] + extra) == sorted(f.name for f in dataclasses.fields(cls))


def test_block_entries_decode_back_and_are_strict() -> None:
    data = BLOCK_WITH_ENTRIES.encoded
    assert Block.decode(data) == BLOCK_WITH_ENTRIES
    assert [entry.kind for entry in Block.decode(data).entries] == ["round", "result", "metrics"]
    fields = BLOCK_WITH_ENTRIES.to_fields()
    entry = fields[3][0]
    for broken in ([*fields[:3], []],  # an empty entries array is not canonical: omit it
                   [*fields[:3], [["vote", entry[1]]]],  # unknown tag
                   [*fields[:3], [["round"]]],  # no body
                   [*fields[:3], [["result", entry[1]]]],  # a round's body under the result tag
                   [*fields[:3], [entry] * 401],  # more entries than a block may hold
                   [*fields, []]):
        with pytest.raises(ValidationError) as caught:
            Block.from_fields(broken)
        assert caught.value.code == "bad-encoding", broken


def _examples() -> list[tuple[str, Any]]:
    found = [(name, value) for name, value in CONTAINERS.items()]
    found += [(f"msg-{name}", value) for name, value in MESSAGES.items()]
    return found


@pytest.mark.parametrize(("name", "value"), _examples(), ids=[n for n, _ in _examples()])
def test_decoding_is_strict_for_every_type(name: str, value: Any) -> None:
    """Wrong arity, a bool for an int, a str for bytes, an oversized byte string: all 'bad-encoding'."""
    cls = type(value)
    fields = value.to_fields()
    broken = [[*fields, 0], fields[:-1] if fields else [0], tuple(fields), {"x": 1}]
    for index, field in enumerate(cls.FIELDS):
        kind = field.kind
        if isinstance(kind, Int):
            broken.append([*fields[:index], True, *fields[index + 1:]])
            broken.append([*fields[:index], kind.high + 1, *fields[index + 1:]])
        elif isinstance(kind, Bin):
            broken.append([*fields[:index], "text", *fields[index + 1:]])
            broken.append([*fields[:index], bytes(kind.max_length + 1), *fields[index + 1:]])
        elif isinstance(kind, Str):
            broken.append([*fields[:index], b"bytes", *fields[index + 1:]])
        elif isinstance(kind, ListOf):
            broken.append([*fields[:index], [fields[index][0] if fields[index] else 0] * (kind.max_items + 1),
                           *fields[index + 1:]])
            if isinstance(kind.item, TupleOf) and fields[index]:
                item = fields[index][0]
                for bad_item in (item[:-1], [*item, 0], tuple(item), [True] * len(item)):
                    broken.append([*fields[:index], [bad_item, *fields[index][1:]], *fields[index + 1:]])
    for candidate in broken:
        with pytest.raises(ValidationError) as caught:
            cls.from_fields(candidate)
        assert caught.value.code == "bad-encoding", candidate
