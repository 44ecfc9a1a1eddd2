#!/usr/bin/env python3
"""LungLedger command line: init, genesis, node (and testnet, see below).

    python run_node.py init --data-dir DIR --name "St. Mary's"
    python run_node.py genesis --member DIR [--member DIR ...] --out genesis.json
    python run_node.py node --data-dir DIR [--port P] [--peer HOST:PORT ...]
    python run_node.py testnet --nodes N --base-port P --data-root DIR [--federated [--rounds R]]   (P = 0: ports chosen by the kernel)
    python run_node.py backup --data-dir DIR --out BACKUP_DIR     (safe while the node runs)
    python run_node.py restore --backup BACKUP_DIR --data-dir NEW_DIR
    python run_node.py user add|disable|enable|list --data-dir DIR [NAME] [--admin] [--password-stdin]

`testnet` creates N hospitals' keys and a shared genesis under DIR on the first
run, starts N node processes on ports P..P+N-1 that connect to each other,
prints each node's address and API token, and stops them all on Ctrl-C or
SIGTERM. Run it again with the same DIR to continue the same chain. With
``--base-port 0`` every node binds port 0 and the testnet reads the port it got
back from its data directory before starting the next node, which dials the
previous one (the last one also dials the first): no port is picked and bound
later, so nothing can take it in between.

With `--federated` (docs/FEDERATED.md) hospital 1 trains on the NIH radiographs
and hospital 2 on the JSRT radiographs of `../shared/data/xray` (split by
`source_dataset`; other hospitals relay and check), and hospital 1 proposes R
rounds one after the other, printing each site's held-out AUC of the head in use
and of the round's aggregate, the adoption verdict and the head digest.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from node.config import DEFAULT_MODELS_DIR, REPO_ROOT, NodeConfig
from node.genesis import DEFAULT_DIFFICULTY, DEFAULT_MAX_REORG_DEPTH, build_genesis, load_genesis, write_genesis
from node.identity import KEY_FILE, init_identity, load_identity


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
        "tls": False if args.no_tls else None,
        "mine": False if args.no_mining else None,
    }
    if args.config:
        return NodeConfig.from_json_file(Path(args.config), **overrides)
    return NodeConfig(**{k: v for k, v in overrides.items() if v is not None})


def command_node(args: argparse.Namespace) -> int:
    from node.launcher import serve_until_signalled

    config = node_config_from_args(args)
    logging.basicConfig(level=config.log_level, format=f"%(asctime)s {config.port} %(name)s %(levelname)s %(message)s")
    asyncio.run(serve_until_signalled(config))
    return 0


TESTNET_READY_TIMEOUT_S = 120.0
TESTNET_STOP_TIMEOUT_S = 15.0
log = logging.getLogger("lungledger.testnet")


def prepare_testnet(root: Path, count: int, difficulty: int) -> Path:
    """Keys for each hospital and one shared genesis, created only where missing."""
    for index in range(count):
        data_dir = root / f"node{index}"
        if not (data_dir / "node.key").exists():
            init_identity(data_dir, f"Hospital {index + 1}")
        ensure_demo_admin(data_dir)
    genesis_path = root / "genesis.json"
    members = [load_identity(root / f"node{i}").member for i in range(count)]
    if genesis_path.exists():
        listed = {m.member_id for m in load_genesis(genesis_path).params.members}
        if listed != {m.member_id for m in members}:
            raise ValueError(f"{genesis_path} lists {len(listed)} members, not these {count} nodes; "
                             f"use the same --nodes as before or a new --data-root")
    else:
        write_genesis(genesis_path, build_genesis("lungledger-testnet", members, int(time.time() * 1000), difficulty))
    return genesis_path


DEMO_ADMIN = "admin"
DEMO_PASSWORD_FILE = "testnet_admin_password"


def ensure_demo_admin(data_dir: Path) -> str:
    """A testnet node's administrator account for the page (random password in a 0600 file); returns it."""
    import secrets

    from node.users import open_account_store

    password_file = data_dir / DEMO_PASSWORD_FILE
    if password_file.exists():
        return password_file.read_text().strip()
    password = secrets.token_urlsafe(12)
    accounts = open_account_store(data_dir)
    try:
        if any(user.username == DEMO_ADMIN for user in accounts.list_users()):
            return "(set before; see run_node.py user)"
        accounts.add_user(DEMO_ADMIN, password, "admin")
    finally:
        accounts.close()
    password_file.touch(mode=0o600)
    password_file.write_text(password + "\n")
    return password


def choose_plugin(no_diagnostics: bool) -> bool:
    """True when the nodes can run the default diagnostic plug-in (models and loader present)."""
    if no_diagnostics:
        log.info("diagnostics disabled (--no-diagnostics): nodes run relay-only")
        return False
    model = DEFAULT_MODELS_DIR / "ct" / "model.tflite"
    if not model.exists():
        log.warning("no model at %s: nodes run relay-only (train and export the models to enable diagnoses)", model)
        return False
    try:
        importlib.import_module("diagnostics")
    except ImportError as error:
        log.warning("cannot import diagnostics (%s): nodes run relay-only", error)
        return False
    return True


FEDERATED_SITES = ("NIH ChestX-ray14", "JSRT")  # hospital 1, hospital 2
FEDERATED_ROUND_S = 120.0


def get_shared_xray_dir() -> Path:
    shared = os.environ.get("LUNGLEDGER_SHARED", "").strip()
    return (Path(shared).expanduser() if shared else REPO_ROOT.parent / "shared").resolve() / "data" / "xray"


def write_federated_config(root: Path, index: int) -> Path:
    """The node config file of a federated testnet hospital (sites 1 and 2 train; the others observe)."""
    section: dict[str, object] = {"modality": "xray", "round_s": FEDERATED_ROUND_S}
    if index < len(FEDERATED_SITES):
        section.update({"data_dir": str(get_shared_xray_dir()), "source": FEDERATED_SITES[index]})
    path = root / f"node{index}" / "federated.json"
    path.write_text(json.dumps({"data_dir": str(root / f"node{index}"), "federated": section}, indent=1))
    return path


def request_own_node(url: str, token: str, body: bytes | None = None, timeout: float = 10) -> Any:
    request = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {token}",
                                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout, context=make_own_node_context()) as response:
        return json.loads(response.read())


def format_auc(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"


def run_federated_rounds(root: Path, ports: list[int], rounds: int, stop_requested: list[int]) -> None:
    """Hospital 1 proposes ``rounds`` rounds in turn; print each site's figures as the rounds are decided."""
    token = load_identity(root / "node0").api_token
    sites = range(min(len(FEDERATED_SITES), len(list(root.glob("node*")))))
    body = json.dumps({"participants": [load_identity(root / f"node{site}").member_id.hex() for site in sites],
                       "quorum": len(sites)}).encode()
    for number in range(1, rounds + 1):
        proposed = request_own_node(f"https://127.0.0.1:{ports[0]}/api/v1/federated/rounds", token, body)
        round_id = str(proposed["round_id"])
        deadline = time.monotonic() + FEDERATED_ROUND_S + 90
        states: dict[int, dict[str, Any]] = {}
        while time.monotonic() < deadline and not stop_requested and len(states) < len(sites):
            for site in sites:
                status = request_own_node(f"https://127.0.0.1:{ports[site]}/api/v1/federated", token)
                found = [r for r in status["rounds"] if r["round_id"] == round_id]
                if found and found[0]["adoption"] is not None:
                    states[site] = found[0]
            time.sleep(1.0)
        for site, state in sorted(states.items()):
            report = state.get("local_report") or {}
            print(f"round {number} hospital {site + 1} ({FEDERATED_SITES[site]}): held-out AUC in use "
                  f"{format_auc(report.get('current_auc'))} -> aggregate {format_auc(report.get('candidate_auc'))}; "
                  f"{state['adoption']}; head {str(state['head_digest'])[:16]}; excluded {state['excluded']}",
                  flush=True)
        if len(states) < len(sites):
            print(f"round {number}: not decided on every site in time", flush=True)


def testnet_command(root: Path, index: int, port: int, peer_ports: list[int], genesis: Path,
                    diagnostics: bool, config: Path | None = None) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "node", "--data-dir", str(root / f"node{index}"),
               "--genesis", str(genesis), "--host", "127.0.0.1", "--port", str(port)]
    for peer_port in peer_ports:
        command += ["--peer", f"127.0.0.1:{peer_port}"]
    if config is not None:
        command += ["--config", str(config)]
    return command if diagnostics else [*command, "--no-diagnostics"]


def fixed_port_peers(index: int, count: int, base_port: int) -> list[int]:
    """Ring neighbours on ports base_port..base_port+count-1."""
    return [base_port + other for other in sorted({(index - 1) % count, (index + 1) % count} - {index})]


def bound_port_peers(index: int, count: int, ports: list[int]) -> list[int]:
    """With port 0, a node can only dial nodes already bound: the previous one, and the first from the last."""
    if index == 0:
        return []
    return sorted({ports[index - 1], ports[0]} if index == count - 1 else {ports[index - 1]})


def wait_for_bound_port(data_dir: Path, process: subprocess.Popen[bytes], deadline: float) -> int | None:
    """The port a node started with port 0 bound (node/launcher.py writes it into its data dir), or None."""
    from node.launcher import read_port_file  # deferred, as in command_node: init/genesis need no aiohttp app

    while time.monotonic() < deadline and process.poll() is None:
        port = read_port_file(data_dir)
        if port is not None:
            return port
        time.sleep(0.1)
    return None


def start_testnet_nodes(root: Path, count: int, base_port: int, genesis: Path, diagnostics: bool,
                        processes: list[subprocess.Popen[bytes]], deadline: float,
                        configs: list[Path | None]) -> list[int] | None:
    """Start the nodes (appended to ``processes`` as they start); their ports, or None if one did not bind."""
    from node.launcher import PORT_FILE
    if base_port != 0:
        for index in range(count):
            command = testnet_command(root, index, base_port + index, fixed_port_peers(index, count, base_port),
                                      genesis, diagnostics, configs[index])
            processes.append(subprocess.Popen(command))
        return [base_port + index for index in range(count)]
    ports: list[int] = []
    for index in range(count):
        data_dir = root / f"node{index}"
        (data_dir / PORT_FILE).unlink(missing_ok=True)  # a stale file from the last run names an old port
        command = testnet_command(root, index, 0, bound_port_peers(index, count, ports), genesis, diagnostics,
                                  configs[index])
        processes.append(subprocess.Popen(command))
        port = wait_for_bound_port(data_dir, processes[-1], deadline)
        if port is None:
            return None
        ports.append(port)
    return ports


def make_own_node_context() -> ssl.SSLContext:
    """The testnet polls nodes it started itself: their certificate is their own (self-signed), not verified here."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def wait_until_serving(port: int, process: subprocess.Popen[bytes], deadline: float) -> bool:
    url = f"https://127.0.0.1:{port}/api/v1/status"
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2, context=make_own_node_context()) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + TESTNET_STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("node pid %d did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()


def command_testnet(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s testnet %(levelname)s %(message)s")
    root, count, base_port = Path(args.data_root).resolve(), args.nodes, args.base_port
    if not 1 <= count <= 64 or not (base_port == 0 or 1024 <= base_port <= 65535 - count):
        raise ValueError("--nodes must be 1..64 and --base-port 0 or leave room for N ports below 65536")
    genesis = prepare_testnet(root, count, args.difficulty)
    diagnostics = choose_plugin(args.no_diagnostics)
    stop_requested: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, frame: stop_requested.append(number))
    configs = [write_federated_config(root, i) if args.federated else None for i in range(count)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        deadline = time.monotonic() + TESTNET_READY_TIMEOUT_S
        ports = start_testnet_nodes(root, count, base_port, genesis, diagnostics, processes, deadline, configs)
        if ports is None or not all(wait_until_serving(ports[i], p, deadline) for i, p in enumerate(processes)):
            print("error: not every node started; see the log lines above", file=sys.stderr)
            return 1
        for index in range(count):
            identity = load_identity(root / f"node{index}")
            password = ensure_demo_admin(root / f"node{index}")
            print(f"{identity.name}: https://127.0.0.1:{ports[index]}/  sign in as {DEMO_ADMIN} / {password}  "
                  f"(api token for scripts: {identity.api_token})", flush=True)
        print(f"testnet of {count} nodes running (data in {root}); Ctrl-C stops it", flush=True)
        if args.federated:
            run_federated_rounds(root, ports, args.rounds, stop_requested)
        while not stop_requested:
            if any(p.poll() is not None for p in processes):
                print("error: a node process exited; stopping the testnet", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        stop_all(processes)


def command_backup(args: argparse.Namespace) -> int:
    from node.hospital.backup import create_backup

    manifest = create_backup(Path(args.data_dir), Path(args.out))
    print(json.dumps({"backup": args.out, "chain": manifest["chain"], "files": sorted(manifest["files"])}, indent=2))
    return 0


def command_restore(args: argparse.Namespace) -> int:
    from node.hospital.backup import restore_backup

    print(json.dumps(restore_backup(Path(args.backup), Path(args.data_dir)), indent=2))
    return 0


def read_new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    password = getpass.getpass("password for the new user: ")
    if getpass.getpass("the same password again: ") != password:
        raise ValueError("the two passwords differ")
    return password


def command_user(args: argparse.Namespace) -> int:
    """People's accounts on this node (node/users.py); takes effect at once, also on a running node."""
    from node.users import open_account_store

    data_dir = Path(args.data_dir)
    if not (data_dir / KEY_FILE).exists():
        raise FileNotFoundError(f"{data_dir} is not a node's data directory (run 'run_node.py init' first)")
    accounts = open_account_store(data_dir)
    try:
        if args.action == "list":
            for user in accounts.list_users():
                print(f"{user.username}\t{user.role}\t{'disabled' if user.disabled else 'active'}")
            return 0
        if not args.username:
            raise ValueError(f"'user {args.action}' needs a user name")
        if args.action == "add":
            user = accounts.add_user(args.username, read_new_password(args.password_stdin),
                                     "admin" if args.admin else "user")
        else:
            user = accounts.set_disabled(args.username, args.action == "disable")
        print(json.dumps(user.to_dict()))
        return 0
    finally:
        accounts.close()


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
    node.add_argument("--no-tls", action="store_true",
                      help="plain HTTP and unencrypted peer links (development only; peers must match)")
    node.add_argument("--no-mining", action="store_true",
                      help="never mine: relay this node's records (and peers') for the other members to mine")
    node.set_defaults(handler=command_node)
    testnet = sub.add_parser("testnet", help="run N local nodes (keys and genesis created on first run)")
    testnet.add_argument("--nodes", type=int, default=3)
    testnet.add_argument("--base-port", type=int, default=8601,
                         help="first of N consecutive ports; 0: every node binds a port the kernel chooses")
    testnet.add_argument("--data-root", required=True)
    testnet.add_argument("--difficulty", type=int, default=DEFAULT_DIFFICULTY)
    testnet.add_argument("--no-diagnostics", action="store_true", help="relay-only nodes even if models are present")
    testnet.add_argument("--federated", action="store_true",
                         help="hospital 1 trains on NIH, hospital 2 on JSRT radiographs; run federated rounds")
    testnet.add_argument("--rounds", type=int, default=3, help="(--federated) rounds to run")
    testnet.set_defaults(handler=command_testnet)
    backup = sub.add_parser("backup", help="copy a node's databases (SQLite online backup) and keys, while it runs")
    backup.add_argument("--data-dir", required=True)
    backup.add_argument("--out", required=True, help="a new (or empty) folder for the backup")
    backup.set_defaults(handler=command_backup)
    restore = sub.add_parser("restore", help="restore a backup into a new (or empty) data directory")
    restore.add_argument("--backup", required=True)
    restore.add_argument("--data-dir", required=True)
    restore.set_defaults(handler=command_restore)
    user = sub.add_parser("user", help="add, disable, enable or list the people who can sign in to a node")
    user.add_argument("action", choices=["add", "disable", "enable", "list"])
    user.add_argument("username", nargs="?")
    user.add_argument("--data-dir", required=True)
    user.add_argument("--admin", action="store_true", help="(add) may see every user's worklist and the audit log")
    user.add_argument("--password-stdin", action="store_true", help="(add) read the password from standard input")
    user.set_defaults(handler=command_user)
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
