"""Every peer-facing limit of the LungLedger protocol, in one place.

As Bitcoin Core's net_processing.cpp keeps them at the top of the file: a
reviewer can see at a glance what a peer may make this node do.
"""

from __future__ import annotations

# --- protocol -------------------------------------------------------------
# 2: auth signature covers the TLS certificates; 3: hello says whether the node mines;
# 4: the node knows get_head / head / head_not_found (asked only of peers whose hello says 4 or more)
PROTOCOL_VERSION = 4
MIN_PROTOCOL_VERSION = 3
HEAD_FETCH_MIN_VERSION = 4
P2P_PATH = "/p2p"
USER_AGENT = "lungledger/0.1"
MAX_USER_AGENT_CHARS = 64
NONCE_BYTES = 32

# --- frames ---------------------------------------------------------------
# A frame is one binary WebSocket message holding one msgpack-encoded message.
# The largest legitimate frame is a `blocks` reply: MAX_BLOCKS_RESPONSE_BYTES
# of block bytes plus a little framing.
MAX_FRAME_BYTES = 4 * 1024 * 1024
MAX_BLOCKS_RESPONSE_BYTES = 3 * 1024 * 1024
MAX_SEND_QUEUE_FRAMES = 1024  # a peer that does not read is disconnected...
MAX_SEND_QUEUE_BYTES = 32 * 1024 * 1024  # ...and so is one whose unsent replies pass this size

# --- per-message item limits -----------------------------------------------
MAX_LOCATOR_HASHES = 64
MAX_HEADERS_PER_MESSAGE = 2000
MAX_BLOCKS_PER_REQUEST = 128
MAX_PEERS_PER_MESSAGE = 64
MAX_HOST_CHARS = 255
MAX_HEADER_BYTES = 256  # one header in a `headers` message
MAX_MESSAGE_TYPE_CHARS = 32
# federated rounds (network/model_messages.py): a head is float64 weights + bias
MAX_HEAD_FEATURES = 4096
MAX_HEAD_BYTES = 8 * (MAX_HEAD_FEATURES + 1)
MAX_ROUND_PARTICIPANTS = 64
MAX_MODEL_METRICS = 8
MAX_MODEL_METRIC_CHARS = 32
MAX_KNOWN_MODEL_MESSAGES = 4096  # round and update digests remembered (relay each once)
# head fetch (node/federated_fetch.py): one request in flight; each peer asked once per pass, passes further apart
HEAD_REQUEST_TIMEOUT_S = 10.0  # a peer that does not answer a `get_head` by then counts as not holding it
HEAD_RETRY_MIN_S = 1.0  # the wait after a pass in which no peer had the head...
HEAD_RETRY_MAX_S = 15.0  # ...doubling up to this, until the head is held or the chain no longer names it
MAX_RECORDS_PER_MESSAGE = 200  # pending records in one `records` message (each <= MAX_RECORD_BYTES)

# --- record relay -----------------------------------------------------------
MAX_KNOWN_RECORDS = 20_000  # record ids remembered per peer as already known to it
MAX_RECENT_RECORDS = 50_000  # record ids this node handled lately (duplicates skip the chain thread)
RELAY_ON_CONNECT_RECORDS = 20_000  # pending records sent to a peer when its session opens
RELAY_FLUSH_INTERVAL_S = 0.02  # at most one `records` message per peer this often (new records batch up meanwhile)
# Relayed records taken from one member's sessions (token bucket, records per second and burst): far above
# what hospitals upload (a few a second each), with room for a whole pool sent on connect. Records past it
# are dropped without blame (`relay-rate`; their creator keeps them and they come again on reconnect).
RELAY_RECORDS_RATE = (2000.0, RELAY_ON_CONNECT_RECORDS + 2000.0)

# --- sync -----------------------------------------------------------------
MAX_BLOCKS_IN_FLIGHT_PER_PEER = 256
BLOCKS_PER_GET_BLOCKS = 64  # what we ask for at once (<= MAX_BLOCKS_PER_REQUEST)
BLOCK_DOWNLOAD_WINDOW = 2048  # never fetch bodies further ahead than this above the tip
MAX_HEADER_TREE = 100_000  # headers held without bodies
CONNECT_BATCH_BLOCKS = 500  # blocks handed to the chain in one transaction
MAX_ORPHAN_BLOCKS = 128  # received blocks whose parent is unknown (held while we fetch it)
MAX_DIRECT_FETCH_GAP = 16  # announcements this close to our tip are fetched directly
MAX_UNCONNECTING_HEADERS = 10  # header messages that do not connect before a ban
MAX_KNOWN_INVENTORY = 5000  # hashes remembered per peer as already known to it
MAX_REJECTED_HASHES = 10_000  # blocks remembered as invalid

# --- timeouts (seconds) ---------------------------------------------------
HANDSHAKE_TIMEOUT_S = 5.0  # from the WebSocket upgrade to a verified auth; longer counts as an idle handshake
REQUEST_TIMEOUT_S = 30.0  # headers / blocks replies
PING_INTERVAL_S = 30.0
PING_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 5.0
TICK_INTERVAL_S = 1.0  # request-timeout and reconnect housekeeping
SEND_TIMEOUT_S = 10.0
SHUTDOWN_GRACE_S = 2.0  # for sessions to close cleanly on stop

# --- per-peer, per-message-type rate limits (token buckets, as Chia's rate limiter) ---
# (messages per second, burst). Far above what an honest peer sends (sync of
# 20,000 blocks runs at ~600 blocks/s: ~10 `blocks` and `get_blocks` a second);
# messages past the limit are dropped, and a peer that keeps at it is
# disconnected and refused for FLOOD_BAN_MIN_S, doubling on each repeat.
MESSAGE_RATE_LIMITS: dict[str, tuple[float, float]] = {
    "announce": (100.0, 400.0),
    "get_headers": (20.0, 40.0),
    "headers": (20.0, 40.0),
    "get_blocks": (100.0, 200.0),
    "blocks": (200.0, 400.0),
    "not_found": (50.0, 200.0),
    "records": (100.0, 400.0),  # senders batch and send at most 1 / RELAY_FLUSH_INTERVAL_S = 50 a second
    "get_peers": (1.0, 10.0),
    "peers": (1.0, 10.0),
    "ping": (2.0, 10.0),
    "pong": (2.0, 10.0),
    "model_round": (1.0, 10.0),  # a round is proposed every few minutes at most
    "model_update": (10.0, 2 * 64),  # one per participant per round, relayed: a round's worth at once
    "model_metrics": (10.0, 2 * 64),  # likewise, one per site per round
    "get_head": (1.0, 10.0),  # a node asks one peer at a time, only while the chain's head is missing
    "head": (1.0, 10.0),  # one reply per request (<= MAX_HEAD_BYTES of head each)
    "head_not_found": (1.0, 10.0),
}
DEFAULT_MESSAGE_RATE = (10.0, 20.0)  # any type not listed (hello/auth after the handshake are violations anyway)
MAX_THROTTLED_MESSAGES = 100  # dropped messages in one session before the peer is disconnected
FLOOD_BAN_MIN_S = 60.0  # first refusal after flooding; doubles per repeat, up to BAN_DURATION_S

# --- peers, discovery and bans ---------------------------------------------
DEFAULT_MAX_PEERS = 16
DEFAULT_OUTBOUND_PEERS = 8
# Pre-handshake limits (inbound links still in the handshake; our own dials are never limited by them).
MAX_HANDSHAKING = 8  # any address
RESERVED_MEMBER_HANDSHAKES = 4  # more, only for addresses members were seen at (bootstrap, learned, connected)
MAX_HANDSHAKES_PER_ADDRESS = 2  # at once, from one address (the node's own hosts exempt)
MAX_IDLE_HANDSHAKES = 3  # handshakes from one address that ran past the deadline before a ban...
IDLE_HANDSHAKE_BAN_S = 10 * 60  # ...of the address (never a member id: nothing was authenticated)
MAX_KNOWN_ADDRESSES = 1024
GET_PEERS_INTERVAL_S = 60.0
RECONNECT_BACKOFF_MIN_S = 0.5
RECONNECT_BACKOFF_MAX_S = 60.0
RECONNECT_BOOTSTRAP_BACKOFF_MAX_S = 4.0  # members we keep connected are redialed promptly after an outage
BAN_DURATION_S = 24 * 60 * 60
MAX_BANS = 10_000

# Consensus rejections that are not the sending peer's fault: a block up to
# two hours "too new" may come from an honest clock that is a little ahead.
NOT_PEER_FAULT_CODES = frozenset({"time-too-new"})

# Rejections about what the block hash does not commit to (the miner's signature,
# the body's size, the records against the Merkle root): anyone can make such a
# "mutated" copy of a valid block, so they ban the peer that sent it but never mark
# the hash invalid (Bitcoin Core's BLOCK_MUTATED), and the block is fetched again
# from another peer.
MUTATED_BLOCK_CODES = frozenset({"bad-signature", "bad-merkle", "block-too-large", "empty-block"})
