#!/usr/bin/env python3
"""LungLedger command line: init, genesis, node (and testnet, see below).

    python run_node.py init --data-dir DIR --name "St. Mary's"
    python run_node.py genesis --member DIR [--member DIR ...] --out genesis.json
    python run_node.py node --data-dir DIR [--port P] [--peer HOST:PORT ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from node.config import NodeConfig
from node.genesis import DEFAULT_DIFFICULTY, DEFAULT_MAX_REORG_DEPTH, build_genesis, write_genesis
from node.identity import init_identity, load_identity


def command_init(args: argparse.Namespace) -> int:
    identity = init_identity(Path(args.data_dir), args.name)
    print(json.dumps({"member_id": identity.member_id.hex(), "public_key": identity.public_key.hex(),
                      "name": identity.name, "api_token": identity.api_token}, indent=2))
    return 0


def command_genesis(args: argparse.Namespace) -> int:
    members = [load_identity(Path(d)).member for d in args.member]
    genesis = build_genesis(args.chain_name, members, int(time.time() * 1000), args.difficulty, args.max_reorg_depth)
    write_genesis(Path(args.out), genesis)
    print(f"genesis written to {args.out}; chain id {genesis.chain_id.hex()}")
    return 0


def node_config_from_args(args: argparse.Namespace) -> NodeConfig:
    overrides = {
        "data_dir": Path(args.data_dir), "host": args.host, "port": args.port,
        "genesis_path": Path(args.genesis) if args.genesis else None,
        "peers": tuple(args.peer or ()),
        "plugin": "none" if args.no_diagnostics else args.plugin,
    }
    if args.config:
        return NodeConfig.from_json_file(Path(args.config), **overrides)
    return NodeConfig(**{k: v for k, v in overrides.items() if v is not None})


def command_node(args: argparse.Namespace) -> int:
    from aiohttp import web

    from node.app import create_app

    config = node_config_from_args(args)
    logging.basicConfig(level=config.log_level, format=f"%(asctime)s {config.port} %(name)s %(levelname)s %(message)s")
    app = create_app(config)
    web.run_app(app, host=config.host, port=config.port, print=None, handle_signals=True, shutdown_timeout=5)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_node.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create a node's keys, API token and data directory")
    init.add_argument("--data-dir", required=True)
    init.add_argument("--name", required=True, help="the hospital's display name")
    init.set_defaults(handler=command_init)
    genesis = sub.add_parser("genesis", help="write a genesis file listing the consortium members")
    genesis.add_argument("--member", action="append", required=True, help="a member's data directory (repeat)")
    genesis.add_argument("--out", required=True)
    genesis.add_argument("--chain-name", default="lungledger")
    genesis.add_argument("--difficulty", type=int, default=DEFAULT_DIFFICULTY)
    genesis.add_argument("--max-reorg-depth", type=int, default=DEFAULT_MAX_REORG_DEPTH)
    genesis.set_defaults(handler=command_genesis)
    node = sub.add_parser("node", help="run one node")
    node.add_argument("--data-dir", required=True)
    node.add_argument("--config", help="JSON config file (keys of node.config.NodeConfig)")
    node.add_argument("--host", default=None)
    node.add_argument("--port", type=int, default=None)
    node.add_argument("--genesis", default=None, help="genesis file (default: DATA_DIR/genesis.json)")
    node.add_argument("--peer", action="append", help="bootstrap peer HOST:PORT (repeat)")
    node.add_argument("--plugin", default=None, help="diagnostic plug-in name (default mobilenetv2)")
    node.add_argument("--no-diagnostics", action="store_true", help="relay-only node, no diagnostic plug-in")
    node.set_defaults(handler=command_node)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
