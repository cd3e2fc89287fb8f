"""The online proofs of the paper's A/B test and of interleaving, against a running platform (``make run``).

    .venv/bin/python bench/proofs.py                      # A/A, A/B, SRM, interleaving, then the concurrent proof
    .venv/bin/python bench/proofs.py --proofs ab --users 8000 --rate 150
    .venv/bin/python bench/proofs.py --proofs concurrent --users 8000

Each proof runs on placements of its own (``proofs``; ``proof_track`` and ``proof_autoplay``
for the concurrent one, created on first use with the control model as default), so the
experiments of the platform's real placements are never touched. For each proof the script
creates and starts an experiment through the serving services, plays simulated users
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
       clicks) with ``PROOF_USERS["interleaving"]`` users: 200 sufficed 4 times in 4, an A/B needed
       5x as many (docs/interleaving.md).
- concurrent  in ONE run, on placement ``proof_track``: an A/A (25 % of its users), an A/B (25 %)
       and an A/B/n with three arms (40 %: control, the treatment model, the control model again),
       side by side; on ``proof_autoplay`` a 5 % holdout started on the control model, after which
       the treatment model is launched there. Sessions go 3:1 to the two placements. Expected:
       A/A no lift, A/B the treatment wins, A/B/n the treatment arm wins and the control copy does not
       (Holm across its arms), every SRM clean, holdout users served only the held model and its
       measured share only the launched one, and a SQL check over the pages finds no user in two
       experiments of one placement.

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
from experiments.lifecycle import holdout_start, placement_set_default  # noqa: E402
from experiments.management.commands.simulate_players import arm_oracle  # noqa: E402
from experiments.models import Experiment, Page, Placement, UserAggregate  # noqa: E402
from experiments.selectors import SERVING_CACHE_TTL_S  # noqa: E402
from experiments.services import (  # noqa: E402
    VariantSpec,
    experiment_create,
    experiment_start,
    experiment_stop,
    placement_create,
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
PROOF_USERS = {"aa": 3000, "ab": 6000, "srm": 3000, "srm_after": 3000, "interleaving": 300, "concurrent": 8000}
PROOFS = ("aa", "ab", "srm", "srm_after", "interleaving", "concurrent")
PROOF_PLACEMENT = "proofs"
CONCURRENT_PLACEMENTS = (("proof_track", 3.0), ("proof_autoplay", 1.0))


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


def proof_placement(key: str, default_model_id: int) -> Placement:
    """The proofs' own placement, its default the control model (created on first use)."""
    placement = Placement.objects.filter(key=key).first() or placement_create(key=key, name=f"{key} (bench/proofs.py)")
    if placement.default_model_id != default_model_id:
        from recommender.models import EmbeddingModel

        placement_set_default(placement=placement, model=EmbeddingModel.objects.get(pk=default_model_id),
                              by="bench/proofs.py")
    return placement


def run_proof(proof: str, args, client: PlatformClient, control_id: int, treatment_id: int, stamp: str,
              results_client: PlatformClient | None = None) -> ProofOutcome:
    """One proof; players go through ``client``, the results are read through ``results_client`` (an analyst
    key: a player key gets 403 there) or ``client`` when that key is an analyst key itself."""
    same = proof in ("aa", "srm", "srm_after")
    name = {"aa": "A/A", "ab": "A/B", "srm": "SRM", "srm_after": "SRM contrast", "interleaving": "interleaving"}[proof]
    proof_placement(PROOF_PLACEMENT, control_id)
    experiment = experiment_create(
        name=f"proof {name} {stamp}", kind="interleaving" if proof == "interleaving" else "ab",
        placement=PROOF_PLACEMENT,
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
                              seed=seed, workers=args.workers, user_prefix=f"proof{proof}", drop=drop,
                              placements=((PROOF_PLACEMENT, 1.0),))
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


# --- the concurrent proof ---------------------------------------------------------------------------

def _comparison(results: dict, key: str) -> dict:
    for comparison in results.get("comparisons") or []:
        if comparison.get("key") == key:
            sequential = comparison.get("sequential") or {}
            relative = comparison.get("relative") or {}
            return {"lift": _number(relative.get("effect")), "sequential_p": _number(sequential.get("p_value")),
                    "sequential_ci": [_number(sequential.get("ci_lower")), _number(sequential.get("ci_upper"))],
                    "outcome": comparison.get("outcome"), "significant": bool(comparison.get("significant"))}
    return {"lift": math.nan, "sequential_p": math.nan, "sequential_ci": [math.nan, math.nan], "outcome": None,
            "significant": False}


def users_in_two_experiments(experiment_ids: list[int]) -> int:
    """(placement, user) pairs whose pages name more than one of these experiments: 0 when layers hold."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM (SELECT placement, user_key FROM {Page._meta.db_table} "
                       "WHERE experiment_id = ANY(%s) GROUP BY 1, 2 HAVING count(DISTINCT experiment_id) > 1) AS x",
                       [experiment_ids])
        return int(cursor.fetchone()[0])


def run_concurrent(args, client: PlatformClient, control, treatment, stamp: str,
                   results_client: PlatformClient) -> dict:
    """A/A 25 %, A/B 25 %, A/B/n 40 % on proof_track and a 5 % holdout on proof_autoplay, in one run."""
    (track, _), (autoplay, _) = CONCURRENT_PLACEMENTS
    for key, _weight in CONCURRENT_PLACEMENTS:
        proof_placement(key, control.pk)
    for leftover in Experiment.objects.filter(placement_id__in=[track, autoplay],
                                              status__in=[Experiment.Status.RUNNING, Experiment.Status.PAUSED]):
        experiment_stop(experiment=leftover)  # an earlier run's, interrupted: frees its buckets

    def create(label: str, share: float, variants: list[VariantSpec], hypothesis: str) -> Experiment:
        return experiment_start(experiment=experiment_create(
            name=f"proof concurrent {label} {stamp}", placement=track, traffic_fraction=share, variants=variants,
            hypothesis=hypothesis))

    c, t = control.pk, treatment.pk
    experiments = {
        "aa": create("A/A", 0.25, [VariantSpec("control", c, 50, True), VariantSpec("treatment", c, 50)],
                     "Both arms serve the control model: no lift, clean split."),
        "ab": create("A/B", 0.25, [VariantSpec("control", c, 50, True), VariantSpec("treatment", t, 50)],
                     "The treatment model earns more clicks."),
        "abn": create("A/B/n", 0.40, [VariantSpec("control", c, 34, True), VariantSpec("better", t, 33),
                                      VariantSpec("same", c, 33)],
                      "The treatment arm wins; the control copy does not (Holm across arms)."),
    }
    experiments["holdout"] = holdout_start(placement=autoplay, share=0.05, name=f"proof concurrent holdout {stamp}")
    launch = placement_set_default(placement=Placement.objects.get(key=autoplay), model=treatment,
                                   by="bench/proofs.py")
    print(f"\n== concurrent: {', '.join(f'{k} {e.pk}' for k, e in experiments.items())}; {treatment} launched on "
          f"{autoplay} after the holdout started (launch {launch.pk}); waiting {SERVING_CACHE_TTL_S + 1:.0f} s")
    time.sleep(SERVING_CACHE_TTL_S + 1.0)
    config = SimulationConfig(users=args.users or PROOF_USERS["concurrent"], rate=args.rate,
                              duration_s=args.duration, seed=args.seed + 4, workers=args.workers,
                              user_prefix="proofconc", placements=CONCURRENT_PLACEMENTS)
    bar = tqdm(total=int(args.rate * args.duration), unit="req", desc="concurrent players", smoothing=0.1)
    lock = threading.Lock()

    def on_request(_summary) -> None:
        with lock:
            bar.update(1)

    summary = run_simulation(config, client, on_request=on_request)
    bar.close()
    print(summary.format())
    rows = {}
    for experiment in experiments.values():
        arms = {key: counts for key, counts in summary.arms.items() if key.startswith(f"{experiment.pk}/")}
        wait_until_landed(experiment, sum(a.impressions for a in arms.values()), sum(a.clicks for a in arms.values()),
                          args.land_timeout)
    for experiment in experiments.values():
        experiment_stop(experiment=experiment)
    for label, experiment in experiments.items():
        results = results_client.experiment_results(experiment.pk)
        srm = results.get("srm") or {}
        users = {v.get("key"): v.get("users") for v in results.get("variants") or []}
        rows[label] = {"experiment": experiment.pk, "share": float(experiment.traffic_fraction), "users": users,
                       "srm_p": _number(srm.get("p_value")), "srm_flagged": bool(srm.get("flagged")),
                       "verdict": results.get("verdict"),
                       "arms": {key: _comparison(results, key) for key in users if key != "control"
                                and key != "holdout"}}
    aa, ab, abn, holdout = (rows[k] for k in ("aa", "ab", "abn", "holdout"))
    held = summary.arm_models.get(f"{experiments['holdout'].pk}/holdout", set())
    launched = summary.arm_models.get(f"{experiments['holdout'].pk}/launched", set())
    checks = {
        "A/A: no significant lift": not aa["arms"]["treatment"]["significant"],
        "A/B: the treatment wins": ab["arms"]["treatment"]["outcome"] == "win",
        "A/B/n: the treatment arm wins": abn["arms"]["better"]["outcome"] == "win",
        "A/B/n: the control copy does not": not abn["arms"]["same"]["significant"],
        "holdout: held users saw only the held model": held == {str(model_label(control))},
        "holdout: its measured share saw only the launched model": launched == {str(model_label(treatment))},
        "every SRM clean": not any(row["srm_flagged"] for row in rows.values()),
        "no user in two experiments of a placement (SQL over the pages)":
            users_in_two_experiments([e.pk for e in experiments.values()]) == 0,
    }
    return {"stamp": stamp, "rows": rows, "checks": checks, "passed": all(checks.values()),
            "simulation": summary.to_dict(), "launch": launch.pk,
            "holdout_models": {"holdout": sorted(held), "launched": sorted(launched)}}


def model_label(model) -> str:
    """The model as the API names it ('name vN')."""
    return f"{model.name} v{model.version}"


def print_concurrent(report: dict) -> None:
    print(f"\nconcurrent proof {report['stamp']} UTC")
    print("experiment   share  users per arm                 arm: lift, always-valid p, outcome           SRM p")
    for label, row in report["rows"].items():
        users = "/".join(f"{k} {v}" for k, v in row["users"].items())
        arms = "; ".join(f"{k}: {fmt_pct(a['lift'])}, {a['sequential_p']:.3g}, {a['outcome']}"
                         for k, a in row["arms"].items())
        print(f"{label:<12} {row['share']:<6.0%} {users:<29} {arms:<45} {row['srm_p']:.3g}")
    for check, ok in report["checks"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {check}")


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
    parser.add_argument("--proofs", default="aa,ab,srm,interleaving,concurrent",
                        help="comma list of aa, ab, srm, srm_after, interleaving, concurrent")
    parser.add_argument("--users", type=int, default=None,
                        help="users per proof (default: aa 3000, ab 6000, srm 3000, interleaving 300, "
                             "concurrent 8000)")
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
    outcomes, concurrent = [], None
    with PlatformClient(args.base_url, key, max_connections=args.workers + 2) as client, \
            PlatformClient(args.base_url, results_key, max_connections=2) as results_client:
        for proof in proofs:
            if proof == "concurrent":
                concurrent = run_concurrent(args, client, control, treatment, stamp, results_client)
            else:
                outcomes.append(run_proof(proof, args, client, control.pk, treatment.pk, stamp, results_client))

    if outcomes:
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
    if concurrent is not None:
        print_concurrent(concurrent)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"proofs-{stamp.replace(' ', 'T').replace(':', '')}.json"
    path.write_text(json.dumps({"proofs": [outcome.__dict__ for outcome in outcomes], "concurrent": concurrent},
                               indent=2, default=str))
    print(f"written {path}")
    passed = all(outcome.passed for outcome in outcomes) and (concurrent is None or concurrent["passed"])
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
