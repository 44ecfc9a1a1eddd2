"""Federated head training, simulated: ``python -m training.federated_sim [--rounds 10] [--report fed.json]``.

Site 1 holds the NIH ChestX-ray14 radiographs of ``../shared/data/xray``, site 2 the
JSRT ones (column ``source_dataset``). Each site's images are split within the site
(grouped by patient, ``diagnostics.split.split_three``): train / tuning / validation.
Features come from the shipped LiteRT model (``models/xray``) exactly as the node
computes them (``diagnostics.federated_data``), so this runs the node's own code and
needs no TensorFlow.

Three heads start from zero and get the same number of gradient steps
(``rounds x epochs``) of the same loss (``diagnostics.federated.train_local``):

- local-only: each site alone on its own training split;
- federated: per round every site trains ``epochs`` steps from the shared head,
  updates are screened and averaged (FedAvg by sample count);
- pooled: one centre holding both training splits (the ceiling).

Printed per round: each site's held-out (validation) AUC for each head. The
L2 penalty is chosen on the sites' tuning splits (mean of the two sites' federated
tuning AUC; never the validation split).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diagnostics.auc import compute_auc
from diagnostics.federated import (Head, LocalConfig, Preconditioner, Update, aggregate, compute_epsilon, privatise,
                                   screen_updates, train_local)
from diagnostics.federated_data import SiteFeatures, get_preconditioner, load_site_features
from diagnostics.model import LiteRTModel
from diagnostics.split import SPLIT_SEED
from training.data import REPO_ROOT, default_data_dir

SITES = (("site1-nih", "NIH ChestX-ray14"), ("site2-jsrt", "JSRT"))
L2_GRID = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1)
Split = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Privacy:
    clip_norm: float = 0.0
    noise_multiplier: float = 0.0


@dataclass(frozen=True)
class Federation:
    sites: dict[str, Split]
    preconditioner: Preconditioner
    shipped: Head


def load_sites(model_dir: Path, data_dir: Path, cache: Path, seed: int = SPLIT_SEED) -> Federation:
    model = LiteRTModel(model_dir)
    everything = load_site_features(model, data_dir, cache)
    shipped = Head.create(model.card.head_weights, model.card.head_bias)
    return Federation({name: site_split(everything, source, seed) for name, source in SITES}, get_preconditioner(model), shipped)


def site_split(everything: SiteFeatures, source: str, seed: int) -> Split:
    site = everything.select(lambda image: image.source == source)
    if not len(site.images):
        raise SystemExit(f"no images of source {source!r} in the data folder")
    return site.split(seed)


def run_round(head: Head, federation: Federation, config: LocalConfig, privacy: Privacy,
              rng: np.random.Generator) -> Head:
    updates = []
    for member_id, split in sorted(federation.sites.items()):
        x, y = split["train"]
        trained = train_local(head, x, y, config, federation.preconditioner)
        if privacy.clip_norm > 0:
            trained = privatise(trained, head, privacy.clip_norm, privacy.noise_multiplier, rng)
        updates.append(Update(member_id, trained, len(y)))
    screening = screen_updates(updates, head)
    if screening.excluded:
        print(f"  excluded: {dict(screening.excluded)}", file=sys.stderr)
    return aggregate(screening.accepted)


def evaluate(head: Head, sites: dict[str, Split], part: str = "validation") -> dict[str, float]:
    return {member_id: compute_auc(split[part][1], head.logits(split[part][0])) for member_id, split in sites.items()}


def simulate(federation: Federation, rounds: int, config: LocalConfig, privacy: Privacy) -> list[dict[str, object]]:
    sites, preconditioner = federation.sites, federation.preconditioner
    zero = Head.create(np.zeros(preconditioner.mean.size), 0.0)
    federated, rng = zero, np.random.default_rng(20261202)
    local = {member_id: zero for member_id in sites}
    pooled = zero
    pooled_x = np.concatenate([split["train"][0] for split in sites.values()])
    pooled_y = np.concatenate([split["train"][1] for split in sites.values()])
    rows: list[dict[str, object]] = []
    for number in range(1, rounds + 1):
        federated = run_round(federated, federation, config, privacy, rng)
        local = {member_id: train_local(local[member_id], *sites[member_id]["train"], config, preconditioner)
                 for member_id in sites}
        pooled = train_local(pooled, pooled_x, pooled_y, config, preconditioner)
        row: dict[str, object] = {"round": number, "federated": evaluate(federated, sites),
                                  "pooled": evaluate(pooled, sites), "federated_digest": federated.digest()}
        for member_id, head in local.items():
            row[f"local_{member_id}"] = evaluate(head, sites)
        rows.append(row)
    return rows


def choose_l2(federation: Federation, rounds: int, epochs: int, privacy: Privacy) -> tuple[float, dict[float, float]]:
    """The penalty with the best mean federated tuning AUC (ties: the stronger penalty)."""
    scores = {}
    for l2 in L2_GRID:
        config = LocalConfig(epochs=epochs, l2=l2)
        head, rng = Head.create(np.zeros(federation.preconditioner.mean.size), 0.0), np.random.default_rng(7)
        for _ in range(rounds):
            head = run_round(head, federation, config, privacy, rng)
        scores[l2] = float(np.mean(list(evaluate(head, federation.sites, "tuning").values())))
    best = max(L2_GRID, key=lambda value: (round(scores[value], 4), value))
    return best, scores


def print_table(rows: list[dict[str, object]]) -> None:
    members = [member_id for member_id, _ in SITES]
    heads = ["federated", "pooled", *[f"local_{member_id}" for member_id in members]]
    print("held-out (validation) AUC per site; columns: " + ", ".join(f"{h}@{m}" for h in heads for m in members))
    for row in rows:
        cells = [f"{row[h][m]:.3f}" for h in heads for m in members]  # type: ignore[index]
        print(f"round {row['round']:>2}: " + "  ".join(cells))


def check_claims(last: dict[str, object]) -> dict[str, bool]:
    """The issue's two claims on the last round."""
    federated, pooled = last["federated"], last["pooled"]
    checks = {}
    for member_id, _ in SITES:
        checks[f"within_0.03_of_pooled@{member_id}"] = pooled[member_id] - federated[member_id] <= 0.03  # type: ignore[index]
    (first, _), (second, _) = SITES
    for owner, other in ((first, second), (second, first)):
        local = last[f"local_{owner}"][other]  # type: ignore[index]
        checks[f"federated_beats_local_{owner}@{other}"] = federated[other] > local  # type: ignore[index]
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO_ROOT / "models" / "xray"))
    parser.add_argument("--data", default=str(default_data_dir("xray")))
    parser.add_argument("--cache", default="/tmp/lungledger_federated_cache")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=20, help="local gradient steps per round")
    parser.add_argument("--l2", type=float, default=0.0, help="fixed penalty (0: choose on the tuning splits)")
    parser.add_argument("--clip-norm", type=float, default=0.0)
    parser.add_argument("--noise-multiplier", type=float, default=0.0)
    parser.add_argument("--split-seed", type=int, default=SPLIT_SEED, help="seed of the grouped split (1337: training's)")
    parser.add_argument("--report", default="")
    args = parser.parse_args(argv)
    federation = load_sites(Path(args.model), Path(args.data), Path(args.cache), args.split_seed)
    for member_id, split in federation.sites.items():
        print(f"{member_id}: " + ", ".join(f"{part} {len(y)} ({int(y.sum())} cancer)" for part, (_, y) in split.items()))
    privacy = Privacy(args.clip_norm, args.noise_multiplier)
    shipped = {member_id: round(auc, 3) for member_id, auc in evaluate(federation.shipped, federation.sites).items()}
    print(f"shipped 2.0.0 head (Keras recipe, both sources' training splits) held-out AUC: {shipped}")
    l2, l2_scores = (args.l2, {}) if args.l2 > 0 else choose_l2(federation, args.rounds, args.epochs, privacy)
    print(f"l2 = {l2} (mean federated tuning AUC per l2: {l2_scores})")
    rows = simulate(federation, args.rounds, LocalConfig(epochs=args.epochs, l2=l2), privacy)
    print_table(rows)
    checks = check_claims(rows[-1])
    epsilon = compute_epsilon(args.noise_multiplier, args.rounds) if args.clip_norm > 0 else math.inf
    print(json.dumps({"checks": checks, "epsilon_delta_1e-5": epsilon}, indent=1))
    if args.report:
        Path(args.report).write_text(json.dumps({"l2": l2, "l2_tuning": {str(k): v for k, v in l2_scores.items()},
                                                 "rounds": rows, "checks": checks, "epsilon": epsilon,
                                                 "epochs": args.epochs}, indent=1))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
