"""A node keeps its bans across a restart (as Bitcoin Core's banlist does).

Plan:
1. A node bans a member for misbehaviour and is stopped cleanly.
2. It starts again from the same data directory: the member is still banned,
   with the same reason; a damaged ban file is ignored (the node starts).
"""

from __future__ import annotations

from pathlib import Path

from node.p2p import BANS_FILE
from tests.support.builders import make_member
from tests.support.network import TestNetwork


async def test_bans_survive_a_restart(tmp_path: Path) -> None:
    rogue = make_member("Rogue")
    network = TestNetwork.create(tmp_path, 1, extra_members=[rogue.member])
    node = network.nodes[0]
    await network.start()
    try:
        node.network.punish(rogue.member_id, "invalid-block:bad-pow")
        await node.stop()
        assert (node.config.data_dir / BANS_FILE).exists()
        await node.start()
        ban = node.network.bans.get_ban(member_id=rogue.member_id)
        assert ban is not None and ban.reason == "invalid-block:bad-pow"
        await node.stop()
        (node.config.data_dir / BANS_FILE).write_text("{not json")
        await node.start()
        assert not node.network.bans.is_banned(member_id=rogue.member_id)
    finally:
        await network.stop()
