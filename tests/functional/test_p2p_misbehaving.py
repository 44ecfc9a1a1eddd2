"""Fake peers that misbehave are banned with the right reason; honest nodes carry on.

Plan:
1. Two honest nodes (connected) and six extra genesis members used by fake
   peers, each connecting from its own loopback address (127.0.0.x).
2. Before any handshake: garbage -> the address is banned and refused (403).
3. A TLS certificate not signed by the claimed member's key -> TLS refuses
   the link; a member's certificate with a hello claiming another member ->
   the address is banned (identity-mismatch), neither member is.
4. After a valid handshake: garbage frame, oversized frame, a block with bad
   proof-of-work, a non-member's block, a block with a bad miner signature, a
   block whose governance entry names a round not on the chain (issue 15) ->
   each fake member is banned with that reason and disconnected.
5. Both honest nodes mined their records (two blocks: with 9 members only
   2 online, that is all the signer limit allows) and converge on one tip.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

from consensus.crypto import BLOCK_DOMAIN, sign
from consensus.entries import GovernanceEntry
from consensus.pow import is_pow_valid
from consensus.types import Block
from network.constants import MAX_FRAME_BYTES
from network.messages import Announce, Blocks, GetBlocks
from network.tls import build_node_tls
from tests.support.builders import MemberKeys, make_member, make_metrics, make_round, mine_block
from tests.support.network import FakePeer, TestNetwork, TestNode, connect_nodes, sync_blocks, wait_for_records, wait_until


def bad_pow_block(node: TestNode, member: MemberKeys) -> Block:
    block = mine_block(node.view.tip, member, difficulty=node.chain.params.difficulty)
    header = block.header
    nonce = header.nonce + 1
    while is_pow_valid(replace(header, nonce=nonce).block_hash, node.chain.params.difficulty):
        nonce += 1
    header = replace(header, nonce=nonce)
    return Block(header, sign(member.key, BLOCK_DOMAIN, header.block_hash), block.records)


def bad_signature_block(node: TestNode, member: MemberKeys) -> Block:
    block = mine_block(node.view.tip, member, difficulty=node.chain.params.difficulty)
    return Block(block.header, sign(make_member("not the miner").key, BLOCK_DOMAIN, block.block_hash), block.records)


def orphan_entry_block(node: TestNode, member: MemberKeys) -> Block:
    """A block whose only entry is the sender's signed metrics for a round that is on no chain."""
    nowhere = make_round(member, [member.member_id])
    entry = GovernanceEntry.of(make_metrics(member, nowhere, 700_000, 700_000))
    return mine_block(node.view.tip, member, [], difficulty=node.chain.params.difficulty, entries=(entry,))


def non_member_block(node: TestNode, member: MemberKeys) -> Block:
    return mine_block(node.view.tip, make_member("outsider"), difficulty=node.chain.params.difficulty)


async def serve_block(fake: FakePeer, block: Block) -> None:
    await fake.send(Announce(block.block_hash, block.height))
    request = await fake.receive(GetBlocks)
    assert request.hashes == (block.block_hash,)
    await fake.send(Blocks((block.encoded,)))


async def test_misbehaving_peers_are_banned_and_honest_nodes_converge(tmp_path: Path) -> None:
    rogues = [make_member(f"Rogue {i}") for i in range(7)]
    network = TestNetwork.create(tmp_path, 2, extra_members=[r.member for r in rogues])
    await network.start()
    honest, other = network.nodes
    genesis = network.genesis
    assert genesis is not None
    bans = honest.network.bans
    try:
        await connect_nodes(honest, other)
        records = [await honest.add_record(), await other.add_record()]

        # 2. garbage before the handshake
        anonymous = FakePeer(rogues[0], genesis, local_host="127.0.0.2")
        assert await anonymous.open(honest) == 101
        await anonymous.send_raw(b"\xc1 not msgpack")
        await anonymous.wait_closed()
        await anonymous.close()
        await wait_until(lambda: bans.is_banned(host="127.0.0.2"), 10, "the garbage sender's address to be banned")
        assert await FakePeer(rogues[0], genesis, local_host="127.0.0.2").open(honest) == 403

        # 3a. a TLS certificate claiming rogue 0 but signed with another key: TLS refuses it, nobody banned
        forger = FakePeer(MemberKeys(make_member("x").key, rogues[0].member), genesis, local_host="127.0.0.3")
        assert await forger.open(honest) == 0
        assert not bans.is_banned(member_id=rogues[0].member_id)

        # 3b. rogue 1's real certificate, a hello claiming rogue 0: the address is banned, neither member
        impostor = FakePeer(rogues[0], genesis, local_host="127.0.0.4",
                            tls=build_node_tls(rogues[1].key, rogues[1].member_id, genesis.params.members))
        assert await impostor.open(honest) == 101
        with contextlib.suppress(ConnectionError, TimeoutError):
            await impostor.handshake()
        await impostor.close()
        await wait_until(lambda: bans.is_banned(host="127.0.0.4"), 10, "the impostor's address to be banned")
        assert bans.get_ban(host="127.0.0.4").reason == "identity-mismatch"  # type: ignore[union-attr]
        assert not bans.is_banned(member_id=rogues[0].member_id) and not bans.is_banned(member_id=rogues[1].member_id)

        # 4. authenticated misbehaviour, one fake member each
        cases = [
            ("malformed-frame", lambda fake: fake.send_raw(b"\xc1 garbage")),
            ("oversized-frame", lambda fake: fake.send_raw(bytes(MAX_FRAME_BYTES + 1))),
            ("invalid-block:bad-pow", lambda fake: serve_block(fake, bad_pow_block(honest, fake.member))),
            ("invalid-block:unknown-member", lambda fake: serve_block(fake, non_member_block(honest, fake.member))),
            ("mutated-block:bad-signature", lambda fake: serve_block(fake, bad_signature_block(honest, fake.member))),
            ("invalid-block:orphan-entry", lambda fake: serve_block(fake, orphan_entry_block(honest, fake.member))),
        ]
        for number, (reason, misbehave) in enumerate(cases, start=1):
            fake = FakePeer(rogues[number], genesis, local_host=f"127.0.0.{10 + number}")
            assert await fake.open(honest) == 101
            await fake.handshake()
            await misbehave(fake)
            await fake.wait_closed()
            await fake.close()
            ban = bans.get_ban(member_id=rogues[number].member_id)
            assert ban is not None and ban.reason == reason, (reason, ban)
            assert bans.is_banned(host=f"127.0.0.{10 + number}")
            assert rogues[number].member_id not in honest.network.peers

        # 5. the honest nodes were never banned and still converge. With 9 members (signer limit 5) two nodes
        # online sign two blocks of any five, so the records of step 1 are all they can mine here.
        assert not bans.is_banned(member_id=other.identity.member_id, host="127.0.0.1")
        await wait_for_records(network.nodes, [r.record_id for r in records])
        await sync_blocks(network.nodes)
        assert other.identity.member_id in honest.network.peers
    finally:
        await network.stop()
