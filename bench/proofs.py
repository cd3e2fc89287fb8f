"""The online proofs of the paper's A/B test and of interleaving, against a running platform (``make run``).

    .venv/bin/python bench/proofs.py                      # A/A, A/B, SRM and interleaving, one after the other
    .venv/bin/python bench/proofs.py --proofs ab --users 8000 --rate 150

For each proof the script creates and starts an experiment through the serving services
(pausing whatever experiment was running, and resuming it at the end), plays simulated users
against the public HTTP API (``experiments.simulation``, the same code as
``manage.py simulate_players``), waits until the worker has landed every event in the
per-user aggregates, stops the experiment, and reads the verdict from
``GET /api/v1/experiments/<id>/results``:

- A/A  both variants on the control model -> no significant lift, SRM clean.
- A/B  control model vs treatment model (default: the active baseline vs CrossMuSim arms)
       -> the lift detected by the sequential test; CTR lift and its CI printed.
- SRM  A/A with a fraction of one arm's users lost before the platform sees them -> flagged.
       (``--proofs srm_after`` shows the contrast: users who leave after a logged request are
       still counted, so the split stays clean; their click-less page only dents that arm's CTR.)

- interleaving  the same two models in an interleaving experiment (team draft, every user sees both)
       -> a significant preference for the treatment's picks (always-valid test of its share of credited
       clicks) with ``PROOF_USERS["interleaving"]`` users, a fifth of the A/B proof's (docs/interleaving.md).

Figures are printed and written to ``var/proofs/proofs-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db.models import Count, Sum  # noqa: E402
from tqdm import tqdm  # noqa: E402

from abplatform.apikeys.authentication import verify_api_key  # noqa: E402
from abplatform.apikeys.models import ApiKey  # noqa: E402
from abplatform.apikeys.services import api_key_create  # noqa: E402
from experiments.management.commands.simulate_players import arm_oracle  # noqa: E402
from experiments.models import Experiment, UserAggregate  # noqa: E402
from experiments.selectors import SERVING_CACHE_TTL_S  # noqa: E402
from experiments.services import (  # noqa: E402
    VariantSpec,
    experiment_create,
    experiment_pause,
    experiment_start,
    experiment_stop,
    resolve_embedding_model,
)
from experiments.simulation import (  # noqa: E402
    DropPolicy,
    PlatformClient,
    SimulationConfig,
    add_api_key_arguments,
    resolve_api_key,
    run_simulation,
)
from experiments.simulation.runner import DROP_AFTER_FIRST_REQUEST, DROP_BEFORE_FIRST_REQUEST  # noqa: E402

ALPHA = 0.05
# Users per proof unless --users says otherwise. The A/B needs the most: per-user CTRs vary a lot
# (propensity, taste, ~75 impressions each), and the always-valid confidence sequence is about 1.7x
# the fixed-horizon CI; at ~+9% lift 2,000 users gave CS [-2%, +20%] on the rig, so 6,000.
PROOF_USERS = {"aa": 3000, "ab": 6000, "srm": 3000, "srm_after": 3000, "interleaving": 1200}
PROOFS = ("aa", "ab", "srm", "srm_after", "interleaving")


@dataclass
class ProofOutcome:
    proof: str
    experiment_id: int
    expectation: str
    passed: bool | None
    verdict: dict
    simulation: dict
    results: dict = field(repr=False, default_factory=dict)


# --- reading the results JSON (helper D's /results) -------------------------------------------

def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _first(mapping: dict, *names: str):
    for name in names:
        if isinstance(mapping, dict) and name in mapping and mapping[name] is not None:
            return mapping[name]
    return None


def read_verdict(results: dict) -> dict:
    """The figures the proofs need from the results JSON: SRM flag and p, lift, its CI (fixed
    horizon and sequential), p-values and the headline verdict. Tolerant of field naming."""
    srm = _first(results, "srm", "sample_ratio_mismatch") or {}
    comparisons = _first(results, "comparisons", "treatments") or []
    if isinstance(comparisons, dict):
        comparisons = list(comparisons.values())
    comparison = comparisons[0] if comparisons else {}
    relative = _first(comparison, "relative", "lift", "fixed") or {}
    sequential = _first(comparison, "sequential", "always_valid") or {}
    arms = _first(results, "arms", "variants") or []
    return {
        "verdict": _first(results, "verdict", "headline", "summary"),
        "srm_flagged": bool(_first(srm, "flagged")),
        "srm_p_value": _number(_first(srm, "p_value", "p")),
        "srm_observed": _first(srm, "observed", "users"),
        "lift": _number(_first(relative, "effect", "lift", "estimate")),
        "ci": [_number(_first(relative, "ci_lower", "lower")), _number(_first(relative, "ci_upper", "upper"))],
        "p_value": _number(_first(relative, "p_value", "p")),
        "sequential_ci": [_number(_first(sequential, "ci_lower", "lower")),
                          _number(_first(sequential, "ci_upper", "upper"))],
        "sequential_p": _number(_first(sequential, "p_value", "p")),
        "arms": [{key: arm.get(key) for key in ("key", "users", "impressions", "clicks", "ctr") if key in arm}
                 for arm in arms if isinstance(arm, dict)],
    }


def read_interleaving_verdict(results: dict) -> dict:
    """The same figures for an interleaving report: "lift" is the treatment's share of credited clicks, its CIs
    the share's, and the coin's first-pick balance stands where the SRM check stands."""
    fixed, sequential = results.get("share_b") or {}, results.get("share_b_sequential") or {}
    first = results.get("first_pick") or {}
    return {
        "verdict": results.get("verdict"), "srm_flagged": bool(first.get("flagged")),
        "srm_p_value": _number(first.get("p_value")), "srm_observed": [results.get("pages")],
        "lift": _number(fixed.get("effect")), "ci": [_number(fixed.get("ci_lower")), _number(fixed.get("ci_upper"))],
        "p_value": _number(fixed.get("p_value")),
        "sequential_ci": [_number(sequential.get("ci_lower")), _number(sequential.get("ci_upper"))],
        "sequential_p": _number(sequential.get("p_value")),
        "arms": [{"key": t.get("key"), "credits": results.get("credits_a" if t.get("team") == 1 else "credits_b")}
                 for t in results.get("teams") or []],
        "users": results.get("users"),
    }


def judge(proof: str, verdict: dict) -> bool | None:
    """Did the proof come out as the design says? None when the results lack the figures."""
    sequential_p, srm = verdict["sequential_p"], verdict["srm_flagged"]
    lower = verdict["sequential_ci"][0]
    if proof == "aa":
        return None if math.isnan(sequential_p) else (sequential_p >= ALPHA and not srm)
    if proof == "ab":
        return None if math.isnan(sequential_p) else (sequential_p < ALPHA and lower > 0 and not srm)
    if proof == "srm":
        return srm
    if proof == "srm_after":
        return not srm
    if proof == "interleaving":  # the treatment's picks preferred: its share's confidence sequence above 1/2
        return None if math.isnan(sequential_p) else (sequential_p < ALPHA and lower > 0.5 and not srm)
    raise ValueError(proof)


# --- running one proof ---------------------------------------------------------------------------

def wait_until_landed(experiment: Experiment, impressions: int, clicks: int, timeout: float) -> dict:
    """Poll the per-user aggregates until the worker has landed what the players saw and sent."""
    deadline = time.monotonic() + timeout
    while True:
        totals = UserAggregate.objects.filter(experiment=experiment).aggregate(
            users=Count("id"), impressions=Sum("impressions"), clicks=Sum("clicks"))
        totals = {key: value or 0 for key, value in totals.items()}
        if totals["impressions"] >= impressions and totals["clicks"] >= clicks:
            if (totals["impressions"], totals["clicks"]) != (impressions, clicks):
                print(f"  ! other traffic in this experiment: {totals['impressions'] - impressions} impressions and "
                      f"{totals['clicks'] - clicks} clicks not from these players (stop other players, e.g. "
                      "`kill $(cat var/simulator.pid)`, for clean proofs)")
            return totals
        if time.monotonic() > deadline:
            print(f"  ! worker has not landed everything after {timeout:.0f} s: {totals} "
                  f"(expected impressions {impressions}, clicks {clicks})")
            return totals
        time.sleep(1.0)


def run_proof(proof: str, args, client: PlatformClient, control_id: int, treatment_id: int, stamp: str,
              results_client: PlatformClient | None = None) -> ProofOutcome:
    """One proof; players go through ``client``, the results are read through ``results_client`` (an analyst
    key: a player key gets 403 there) or ``client`` when that key is an analyst key itself."""
    same = proof in ("aa", "srm", "srm_after")
    name = {"aa": "A/A", "ab": "A/B", "srm": "SRM", "srm_after": "SRM contrast", "interleaving": "interleaving"}[proof]
    experiment = experiment_create(
        name=f"proof {name} {stamp}", kind="interleaving" if proof == "interleaving" else "ab",
        hypothesis={
            "aa": "Both arms serve the same model: no lift, clean split.",
            "ab": "Cross-modal similarity earns more clicks than the audio-only baseline.",
            "srm": f"{args.srm_fraction:.0%} of one arm's users are lost before they are logged: SRM flagged.",
            "srm_after": "Users of one arm leave after a logged request: counted, so no SRM; their CTR drops.",
            "interleaving": "Users click the cross-modal model's picks more than the baseline's on one merged page.",
        }[proof],
        variants=[
            VariantSpec(key="control", embedding_model_id=control_id, is_control=True),
            VariantSpec(key="treatment", embedding_model_id=control_id if same else treatment_id),
        ],
    )
    experiment = experiment_start(experiment=experiment)
    print(f"\n== {name}: experiment {experiment.pk} started; waiting {SERVING_CACHE_TTL_S + 1:.0f} s "
          "for the web workers' serving cache")
    time.sleep(SERVING_CACHE_TTL_S + 1.0)
    drop = DropPolicy()
    if proof == "srm":
        drop = DropPolicy(arm="treatment", fraction=args.srm_fraction, when=DROP_BEFORE_FIRST_REQUEST,
                          arm_of=arm_oracle(experiment.pk))
    elif proof == "srm_after":
        drop = DropPolicy(arm="treatment", fraction=args.srm_fraction, when=DROP_AFTER_FIRST_REQUEST)
    seed = args.seed + {"aa": 0, "ab": 1, "srm": 2, "srm_after": 3, "interleaving": 4}[proof]
    config = SimulationConfig(users=args.users or PROOF_USERS[proof], rate=args.rate, duration_s=args.duration,
                              seed=seed, workers=args.workers, user_prefix=f"proof{proof}", drop=drop)
    started = time.monotonic()
    bar = tqdm(total=int(args.rate * args.duration), unit="req", desc=f"{name} players", smoothing=0.1)
    lock = threading.Lock()

    def on_request(_summary) -> None:
        with lock:  # the players' threads report concurrently
            bar.update(1)

    summary = run_simulation(config, client, on_request=on_request)
    bar.close()
    print(summary.format())
    # the clicks the players sent (events_accepted also counts the plays that follow them)
    landed = wait_until_landed(experiment, summary.impressions, summary.clicks, args.land_timeout)
    experiment_stop(experiment=experiment)
    results = (results_client or client).experiment_results(experiment.pk)
    verdict = read_interleaving_verdict(results) if proof == "interleaving" else read_verdict(results)
    passed = judge(proof, verdict)
    expectation = {
        "aa": f"no significant lift (sequential p >= {ALPHA}), SRM clean",
        "ab": f"lift detected by the sequential test (p < {ALPHA}, CS above 0), SRM clean",
        "srm": "SRM flagged",
        "srm_after": "SRM clean (users were logged before leaving)",
        "interleaving": f"the treatment's picks preferred (always-valid p < {ALPHA}, CS of its share above 50%), "
                        "first picks balanced",
    }[proof]
    print(f"  landed: {landed}; {time.monotonic() - started:.0f} s")
    print(f"  verdict: {verdict['verdict']}")
    what = "treatment's share of credited clicks" if proof == "interleaving" else "CTR lift"
    print(f"  {what} {fmt_pct(verdict['lift'])} (95% CI {fmt_pct(verdict['ci'][0])} .. {fmt_pct(verdict['ci'][1])},"
          f" p {verdict['p_value']:.3g}); sequential CS {fmt_pct(verdict['sequential_ci'][0])} .. "
          f"{fmt_pct(verdict['sequential_ci'][1])}, always-valid p {verdict['sequential_p']:.3g}")
    print(f"  SRM: flagged={verdict['srm_flagged']} p={verdict['srm_p_value']:.3g} users={verdict['srm_observed']}")
    print(f"  expected: {expectation} -> {'PASS' if passed else 'FAIL' if passed is False else 'UNKNOWN'}")
    return ProofOutcome(proof, experiment.pk, expectation, passed, verdict, summary.to_dict(), results)


def offline_metrics(model) -> str:
    """The offline retrieval figures the A/B lift should echo (style P@10, cross-instrument style P@10, ...)."""
    test = (model.metrics or {}).get("test", {})
    keys = ("style_p10", "xinst_style_p10", "mode_p10", "t2a_r10")
    return ", ".join(f"{key} {test[key]:.3f}" for key in keys if isinstance(test.get(key), int | float))


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, OSError):
        return False
    return True


def fmt_pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 100:+.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proofs", default="aa,ab,srm,interleaving",
                        help="comma list of aa, ab, srm, srm_after, interleaving")
    parser.add_argument("--users", type=int, default=None,
                        help="users per proof (default: aa 3000, ab 6000, srm 3000, interleaving 1200)")
    parser.add_argument("--rate", type=float, default=100.0, help="recommendation requests per second")
    parser.add_argument("--duration", type=float, default=900.0, help="upper bound per proof, seconds")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--srm-fraction", type=float, default=0.2, help="share of the treatment arm's users lost")
    parser.add_argument("--control-model", default="baseline", help="embedding model id, arm or name")
    parser.add_argument("--treatment-model", default="crossmusim", help="embedding model id, arm or name")
    parser.add_argument("--base-url", default=settings.PLAYER_BASE_URL)
    add_api_key_arguments(parser, "file holding the API key the players use (default $PLAYER_API_KEY, else the "
                                  "file $PLAYER_API_KEY_FILE, else a new player key 'proofs' is created); the results "
                                  "are read with it if it is an analyst key, else with a new analyst key "
                                  "'proofs (results)'")
    parser.add_argument("--land-timeout", type=float, default=180.0, help="seconds to wait for the worker")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "proofs")
    args = parser.parse_args(argv)

    proofs = [p.strip() for p in args.proofs.split(",") if p.strip()]
    unknown = set(proofs) - set(PROOFS)
    if unknown:
        parser.error(f"unknown proofs {sorted(unknown)}")
    try:  # first: a wrong key file is an argument error, before anything is created
        key = resolve_api_key(args.api_key, args.api_key_file, default_key=settings.PLAYER_API_KEY,
                              default_key_file=settings.PLAYER_API_KEY_FILE or None)
    except ValueError as error:
        parser.error(str(error))
    control = resolve_embedding_model(args.control_model)
    treatment = resolve_embedding_model(args.treatment_model)
    for role, model in (("control", control), ("treatment", treatment)):
        print(f"{role} model: {model} (id {model.pk}); offline test metrics: {offline_metrics(model) or 'none'}")
    key = key or api_key_create(name="proofs")[1]
    given = verify_api_key(key)
    # The results JSON needs an analyst key; a player key given for the players gets a companion one.
    results_key = key if given is not None and given.scope == ApiKey.Scope.ANALYST else \
        api_key_create(name="proofs (results)", scope=ApiKey.Scope.ANALYST)[1]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")

    background = ROOT / "var" / "simulator.pid"
    if background.exists() and _alive(background.read_text().strip()):
        print(f"! background players are running (pid {background.read_text().strip()}, from `make run`): their "
              "traffic will join the proof experiments; stop them first for clean figures")
    running = list(Experiment.objects.filter(status=Experiment.Status.RUNNING))
    for experiment in running:
        print(f"pausing running experiment {experiment.name!r} for the proofs")
        experiment_pause(experiment=experiment)
    outcomes = []
    try:
        with PlatformClient(args.base_url, key, max_connections=args.workers + 2) as client, \
                PlatformClient(args.base_url, results_key, max_connections=2) as results_client:
            for proof in proofs:
                outcomes.append(run_proof(proof, args, client, control.pk, treatment.pk, stamp, results_client))
    finally:
        for experiment in running:
            print(f"resuming {experiment.name!r}")
            experiment_start(experiment=experiment)

    print("\nproof        experiment  users(c/t)       CTR lift [95% CI]              sequential CS"
          "        SRM p    result")
    for outcome in outcomes:
        v = outcome.verdict
        variants = outcome.simulation["variants"]
        users = "/".join(str(variants.get(key, {}).get("users", 0)) for key in ("control", "treatment")) \
            if outcome.proof != "interleaving" else f"{variants.get('interleaved', {}).get('users', 0)} (both)"
        print(f"{outcome.proof:<12} {outcome.experiment_id:<11} {users:<16} "
              f"{fmt_pct(v['lift']):>7} [{fmt_pct(v['ci'][0])}, {fmt_pct(v['ci'][1])}]   "
              f"[{fmt_pct(v['sequential_ci'][0])}, {fmt_pct(v['sequential_ci'][1])}]   "
              f"{v['srm_p_value']:<8.2g} {'PASS' if outcome.passed else 'FAIL' if outcome.passed is False else '?'}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"proofs-{stamp.replace(' ', 'T').replace(':', '')}.json"
    path.write_text(json.dumps([outcome.__dict__ for outcome in outcomes], indent=2, default=str))
    print(f"written {path}")
    return 0 if all(outcome.passed for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
