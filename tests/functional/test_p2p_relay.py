"""Liveness under the signer limit: pending records are relayed, and any member mines any member's records.

Plan:
1. Three nodes in a full mesh (three members: signer limit 2, so nodes 1 and
   2 can take turns); node 0 has mining switched off (``mine: false``,
   standing in for a member the signer limit does not let sign) and is the
   only one uploading.
2. Records uploaded at node 0 (one by one, then a burst) reach every node's
   best chain in blocks mined by nodes 1 and 2; every acknowledged record is
   on the best chain exactly once, and no pool keeps any.
3. (A second network, with four fake members: seven members, so the two
   mining nodes can sign a block each.) Fake members relay a record whose
   signature is not its creator's, a non-member's record and undecodable
   bytes: each sender is banned with ``invalid-record:<code>`` and nothing
   enters a pool. A fake member that relays a duplicate and a record already
   on chain is not banned, and its own new record is relayed on and mined by
   the honest nodes.
4. A site that was down gets the pending records on reconnect: node 2
   stopped, node 0 cut off from node 1, records uploaded at node 0 stay
   pending; node 2 restarts, connects to node 0, receives them when the
   session opens, and with node 1 (still cut off from node 0) they are mined
   by whichever of nodes 1 and 2 the signer limit lets sign; every node has
   every record exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from pathlib import Path

from consensus.types import DiagnosisRecord
from network.messages import Ping, Pong, Records
from tests.support.builders import MemberKeys, make_member, make_record
from tests.support.network import (
    FakePeer, TestNetwork, TestNode, connect_all, connect_nodes, disconnect_nodes, sync_blocks, wait_for_records,
    wait_until,
)

TIMEOUT_S = 60.0  # generous: two shared cores


async def best_chain_record_counts(node: TestNode) -> tuple[Counter[bytes], dict[bytes, bytes]]:
    """How often each record id sits on the node's best chain, and the miner of the block holding it."""
    view = node.view
    blocks = await node.chain.get_blocks(list(view.best[1:]))
    counts: Counter[bytes] = Counter()
    miners: dict[bytes, bytes] = {}
    for block in blocks:
        for record in block.records:
            counts[record.record_id] += 1
            miners[record.record_id] = block.header.miner_id
    return counts, miners


async def assert_each_once(nodes: list[TestNode], record_ids: list[bytes]) -> None:
    for node in nodes:
        counts, _ = await best_chain_record_counts(node)
        assert all(counts[record_id] == 1 for record_id in record_ids), f"node {node.index}: a record not exactly once"
        assert max(counts.values()) == 1, f"node {node.index}: some record is on its best chain twice"


async def relay_from_rogue(node: TestNode, network: TestNetwork, rogue: MemberKeys, host: str,
                           records: list[bytes]) -> FakePeer:
    assert network.genesis is not None
    fake = FakePeer(rogue, network.genesis, local_host=host)
    assert await fake.open(node) == 101
    await fake.handshake()
    await fake.send(Records(tuple(records)))
    return fake


async def expect_banned(node: TestNode, fake: FakePeer, reason: str) -> None:
    await fake.wait_closed()
    await fake.close()
    bans = node.network.bans
    await wait_until(lambda: bans.is_banned(member_id=fake.member.member_id), 10, f"{reason} to be banned")
    ban = bans.get_ban(member_id=fake.member.member_id)
    assert ban is not None and ban.reason == reason


async def test_one_uploading_site_is_carried_by_the_others(tmp_path: Path) -> None:
    network = TestNetwork.create(tmp_path, 3)
    network.configure(0, mine=False)
    await network.start()
    uploader, carrier, site = network.nodes
    try:
        await connect_all(network.nodes)

        # 2. only node 0 uploads, and it does not mine
        uploaded: list[DiagnosisRecord] = []
        for _ in range(4):
            uploaded.append(await uploader.add_record())
            await wait_for_records(network.nodes, [uploaded[-1].record_id], TIMEOUT_S)
        uploaded += await asyncio.gather(*(uploader.add_record() for _ in range(12)))
        ids = [r.record_id for r in uploaded]
        await wait_for_records(network.nodes, ids, TIMEOUT_S)
        await sync_blocks(network.nodes, TIMEOUT_S)
        _, miners = await best_chain_record_counts(uploader)
        carriers = {miners[record_id] for record_id in ids}
        assert uploader.identity.member_id not in carriers
        assert carriers <= {carrier.identity.member_id, site.identity.member_id}
        await assert_each_once(network.nodes, ids)
        await wait_until(lambda: all(n.view.pending_count == 0 for n in network.nodes), TIMEOUT_S, "empty pools")
        assert uploader.miner.blocks_mined == 0
        # flood with dedup: a carrier admits a record at most once, from whichever peer sent it first
        # (fewer if a block holding it arrived before any copy did)
        for node in (carrier, site):
            assert 0 < node.network.relay.records_accepted <= len(ids)
        assert uploader.network.relay.records_accepted == 0

        # 4. a site that was down gets the pending records when it reconnects
        await site.stop()
        await disconnect_nodes(uploader, carrier)
        while_away = [await uploader.add_record() for _ in range(5)]
        away_ids = [r.record_id for r in while_away]
        await wait_until(lambda: uploader.view.pending_count == 5, TIMEOUT_S, "node 0 to hold its 5 records")
        assert carrier.view.pending_count == 0
        await site.start()
        await connect_nodes(site, uploader)
        height_before = uploader.view.height
        await wait_until(lambda: site.view.pending_count == 5 or site.view.height > height_before, TIMEOUT_S,
                         "node 2 to receive the 5 records when its session with node 0 opens")
        await connect_nodes(carrier, site)  # the site may have signed the last block: node 1 may have to carry
        everything = [*ids, *away_ids]
        await wait_for_records(network.nodes, everything, TIMEOUT_S)
        await sync_blocks(network.nodes, TIMEOUT_S)
        _, miners = await best_chain_record_counts(site)
        assert {miners[record_id] for record_id in away_ids} <= {site.identity.member_id, carrier.identity.member_id}
        await assert_each_once(network.nodes, everything)
    finally:
        await network.stop()


async def test_bad_relayed_records_ban_their_sender_and_good_ones_are_carried(tmp_path: Path) -> None:
    rogues = [make_member(f"Rogue {i}") for i in range(4)]
    network = TestNetwork.create(tmp_path, 3, extra_members=[r.member for r in rogues])
    network.configure(0, mine=False)
    await network.start()
    uploader, carrier, _ = network.nodes
    try:
        await connect_all(network.nodes)
        uploaded = [await uploader.add_record()]  # one block: seven members, two of them mining
        await wait_for_records(network.nodes, [r.record_id for r in uploaded], TIMEOUT_S)

        # 3. forged, foreign and malformed records ban their sender; nothing enters a pool
        forged = replace(make_record(uploader.member), fused_ppm=123)  # changed after the creator signed it
        fake = await relay_from_rogue(carrier, network, rogues[0], "127.0.0.2", [forged.encoded])
        await expect_banned(carrier, fake, "invalid-record:bad-signature")
        outsider = make_record(make_member("not a member"))
        fake = await relay_from_rogue(carrier, network, rogues[1], "127.0.0.3", [outsider.encoded])
        await expect_banned(carrier, fake, "invalid-record:unknown-member")
        fake = await relay_from_rogue(carrier, network, rogues[2], "127.0.0.4", [b"\x9c" + bytes(20)])
        await expect_banned(carrier, fake, "invalid-record:bad-encoding")
        for node in network.nodes:
            for record in (forged, outsider):
                assert (await node.chain.get_record_evidence(record.record_id)).evidence.record is None

        # 3b. duplicates and records already on chain are no fault; a member's own new record is carried
        own = make_record(rogues[3], record_id=bytes(range(16)))
        honest = await relay_from_rogue(carrier, network, rogues[3], "127.0.0.5", [uploaded[0].encoded, own.encoded])
        await honest.send(Records((own.encoded, uploaded[0].encoded)))
        await honest.send(Ping(77))
        assert (await honest.receive(Pong, TIMEOUT_S)).nonce == 77
        await wait_for_records(network.nodes, [own.record_id], TIMEOUT_S)
        assert not carrier.network.bans.is_banned(member_id=rogues[3].member_id)
        await honest.close()

    finally:
        await network.stop()
