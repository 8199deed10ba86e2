"""Demonstrations of the Model Registry: ``python main.py`` runs every section,
``python main.py --help`` lists them, ``python main.py registry`` runs one.

No API key and no network needed: the database is a fresh SQLite file in a temporary folder
(or ``--data-dir``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

SECTIONS: dict[str, tuple[str, Callable[["Demo"], None]]] = {}


def section(name: str, title: str):
    def register(fn: Callable[["Demo"], None]) -> Callable[["Demo"], None]:
        SECTIONS[name] = (title, fn)
        return fn
    return register


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join("    " + x for x in out)


class Demo:
    """What the sections share: every layer wired once, on a SQLite file in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        from config import Settings
        from wiring import build_services
        self.data_dir = data_dir
        # A short automatic-rollback window, so that the demo shows it in seconds.
        self.settings = Settings.from_env({"data_dir": data_dir},
                                          defaults={"auto_rollback_window_s": 10.0})
        self.svc = build_services(self.settings)
        self.registry = self.svc.registry
        self.database = self.svc.database

    def onnx_version(self, model: str, version: str, builder=None, status: str = "stable") -> None:
        """Register ``model`` (once) and an ONNX ``version`` with an artifact built here."""
        from errors import AlreadyExists
        from models import onnx_examples
        try:
            self.registry.register_model(model, f"{model} (ONNX, built by main.py)")
        except AlreadyExists:
            pass
        self.registry.register_version(model, version, status, provider="onnx")
        digest, size = self.svc.artifacts.put_bytes((builder or onnx_examples.linear_model)())
        self.registry.attach_artifact(model, version, digest, size)

    def roll(self, model: str, version: str, strategy: str = "direct", load: float = 0.0,
             batch: Callable[[int], int] = lambda i: 1, **options) -> dict:
        """Deploy, then tick the rollout to its end, with generated load meanwhile; prints the
        traffic as deploy() left it and as each tick() moves it."""
        deployments = self.svc.deployments
        stop = threading.Event()
        seen: dict[str, int] = {}
        errors = [0]

        def traffic() -> None:
            i = 0
            while not stop.is_set():
                try:
                    out = self.svc.gateway.predict(model, [[0.1, 0.2, 0.3, 0.4]] * batch(i),
                                                   key=f"user-{i % 500}")
                    seen[out["version"]] = seen.get(out["version"], 0) + 1
                except Exception:
                    errors[0] += 1
                i += 1
                time.sleep(load)

        worker = threading.Thread(target=traffic, daemon=True)
        if load:
            worker.start()
            time.sleep(0.2)                       # some traffic on the old version first
        dep_id = deployments.deploy(model, version, strategy, actor="main.py", **options)
        last = None
        said = "deploy() ->"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            dep = deployments.get(dep_id)
            shown = (dep["state"], dep["step"], tuple(sorted(dep["traffic"].items())))
            if shown != last:
                bar = "  ".join(f"{v} {'#' * (p // 5):<20} {p:3d}%"
                                for v, p in sorted(dep["traffic"].items()))
                step = "" if dep["step"] is None else f" step {dep['step'] + 1}/{len(dep['steps'])}"
                print(f"    {said} [{dep['state']:<12}{step:>12}] {bar}")
                last = shown
            if dep["finished_at"]:
                break
            time.sleep(0.2)
            deployments.tick()                    # what the server's background ticker does
            said = "tick()   ->"
        stop.set()
        if load:
            worker.join(2)
            total = sum(seen.values()) or 1
            share = ", ".join(f"{v}: {n} ({100 * n / total:.0f}%)" for v, n in sorted(seen.items()))
            print(f"    load during the rollout: {total} predictions served, {errors[0]} failed;"
                  f" {share}")
        return deployments.get(dep_id)


@section("registry", "Register models and versions, search, aliases")
def demo_registry(d: Demo) -> None:
    reg = d.registry
    reg.register_model("sentiment-analyzer", "Classifies text sentiment",
                       tags={"team": "nlp", "tier": "gold"})
    reg.register_model("fraud-scorer", "Scores card transactions", tags={"team": "risk"})
    for version, status in [("1.0.0", "stable"), ("1.1.0", "stable"), ("1.2.0-rc.1", "beta"),
                            ("2.0.0-alpha", "experimental")]:
        reg.register_version("sentiment-analyzer", version, status,
                             config={"model": "gemini-2.5-flash", "temperature": 0.0})
    models, _ = reg.list_models(tag="team:nlp")
    print(f"  models tagged team:nlp: {[m['name'] for m in models]}")
    versions = reg.list_versions("sentiment-analyzer")
    print("  versions, newest first by SemVer precedence:")
    print(table(versions, ["version", "status", "provider", "created_at"]))
    reg.set_alias("sentiment-analyzer", "production", "1.1.0")
    for ref in ("latest", "production", "^1.0", "~1.0"):
        print(f"  resolve {ref!r:14} -> {reg.get_version('sentiment-analyzer', ref)['version']}")
    from errors import RegistryError
    for bad in ("1.0", "v1.0.0", "1.0.0+build.7"):
        try:
            reg.register_version("sentiment-analyzer", bad)
        except RegistryError as exc:
            print(f"  register {bad!r:16} -> {exc.code}: {exc.message[:70]}")


@section("semver", "SemVer 2.0.0: precedence, compatibility, ranges")
def demo_semver(_: Demo) -> None:
    from registry.version_manager import VersionManager
    vm = VersionManager()
    print(f"  is_newer('1.1.0', '1.0.0')            = {vm.is_newer('1.1.0', '1.0.0')}")
    print(f"  is_newer('1.0.0-rc.1', '1.0.0')       = {vm.is_newer('1.0.0-rc.1', '1.0.0')}")
    print(f"  is_compatible('1.0.0', '1.5.0')       = {vm.is_compatible('1.0.0', '1.5.0')}")
    print(f"  is_compatible('0.1.0', '0.2.0')       = {vm.is_compatible('0.1.0', '0.2.0')}")
    print(f"  increment_version('1.4.2', 'minor')   = {vm.increment_version('1.4.2', 'minor')}")
    versions = ["1.0.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.11", "1.0.0-beta.2",
                "2.0.0", "1.10.0", "1.9.0"]
    print(f"  get_latest_version({len(versions)} versions)     = {vm.get_latest_version(versions)}")
    print(f"  sorted: {vm.sort(versions)}")
    for rng in ("^1.0.0", "~1.9", "1.0.0 - 1.9.x", ">=2.0.0 || <1.0.0"):
        print(f"  {rng!r:22} matches {[v for v in versions if vm.matches(v, rng)]}")

@section("predict", "Local ONNX predictions through the gateway, Gemini errors explained")
def demo_predict(d: Demo) -> None:
    d.onnx_version("fraud-scorer", "1.0.0")
    for x in ([[0.1, 0.4, 0.2, 0.9]], [[1.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2]]):
        out = d.svc.gateway.predict("fraud-scorer", x)
        print(f"  predict {x} -> {out['output']} (version {out['version']}, "
              f"{out['latency'] * 1e6:.0f} µs, routed by {out['routed_by']})")
    from errors import RegistryError
    for bad in ([[1, 2, 3]], "text"):
        try:
            d.svc.gateway.predict("fraud-scorer", bad)
        except RegistryError as exc:
            print(f"  predict {bad!r:14} -> {exc.code}: {exc.message[:80]}")
    d.registry.register_model("chat", "an LLM behind Gemini")
    d.registry.register_version("chat", "1.0.0", "stable",
                                config={"system_instruction": "Answer in one word."})
    try:
        d.svc.gateway.predict("chat", "hello")
    except RegistryError as exc:
        print(f"  gemini without a key -> {exc.code}: {exc.message[:96]}")


@section("deploy", "Direct, blue-green and canary (10% -> 50% -> 100%) under generated load")
def demo_deploy(d: Demo) -> None:
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        d.onnx_version("ranker", v, status="experimental")
    print("  direct, first deployment of 'ranker': done when deploy() returns (health check "
          "inside the call):")
    d.roll("ranker", "1.0.0", "direct")
    print("  blue-green to 1.1.0: inside deploy(), the candidate is health-checked while 1.0.0")
    print("  serves, then one switch; tick() judges the post-switch window (1.0.0 the fallback):")
    preview = d.svc.gateway.predict("ranker", [[1, 2, 3, 4]], version="1.1.0")
    print(f"    before it, the candidate pinned: version {preview['version']}, "
          f"routed by {preview['routed_by']}")
    d.roll("ranker", "1.1.0", "blue-green", load=0.002,
           analysis={"min_requests": 20, "interval_s": 1, "deadline_s": 20})
    print("  canary to 1.2.0: deploy() returns with 10% live; tick() judges each step (error "
          "rate, p95 vs stable):")
    dep = d.roll("ranker", "1.2.0", "canary", load=0.002,
                 analysis={"min_requests": 30, "interval_s": 1, "deadline_s": 20})
    for verdict in dep["verdicts"]:
        print(f"    verdict: step {verdict.get('step')} {verdict.get('result')} - "
              f"{str(verdict.get('reason'))[:90]}")
    print(f"  traffic now: {d.svc.traffic.get('ranker').weights}")


@section("autorollback", "A faulty version: canary aborted by analysis, live version rolled back")
def demo_autorollback(d: Demo) -> None:
    from models import onnx_examples
    d.onnx_version("scorer", "1.0.0", status="experimental")
    d.onnx_version("scorer", "2.0.0", onnx_examples.batch_of_one_model, "experimental")
    d.roll("scorer", "1.0.0")
    print("  2.0.0 passes its health check (one row) but fails on batches; canary it:")
    dep = d.roll("scorer", "2.0.0", "canary", load=0.002, batch=lambda i: 1 + i % 2,
                 analysis={"min_requests": 20, "interval_s": 1, "deadline_s": 20})
    print(f"  -> {dep['state']}: {dep['reason'][:100]}")
    print("     (failed canary calls were retried on 1.0.0: users saw no error)")
    print("  now deploy it directly, and let the watcher judge the live version:")
    d.roll("scorer", "2.0.0", "direct")
    for i in range(60):
        try:
            d.svc.gateway.predict("scorer", [[0.5, 0.5, 0.5, 0.5]] * (1 + i % 2))
        except Exception:
            pass
    for record in d.svc.rollbacks.watch():
        ev = record["evidence"]
        print(f"  automatic rollback {record['from_version']} -> {record['to_version']}: "
              f"{'; '.join(ev['breaches'])} over {ev['metrics']['requests']} requests")
    print(f"  traffic now: {d.svc.traffic.get('scorer').weights}")


@section("rollback", "Manual rollback and snapshot restore")
def demo_rollback(d: Demo) -> None:
    for v in ("1.0.0", "1.1.0", "1.2.0"):
        d.onnx_version("recommender", v, status="experimental")
        d.roll("recommender", v)
    snap = d.svc.snapshots.create("recommender", reason="known good: 1.2.0", actor="main.py")
    print(f"  snapshot {snap['id']} of the serving state: "
          f"{snap['state']['models']['recommender']['traffic']['weights']}")
    for _ in range(2):
        rb = d.svc.rollbacks.rollback("recommender", reason="demo", actor="main.py")
        print(f"  rollback {rb['from_version']} -> {rb['to_version']}")
    from errors import RegistryError
    try:
        d.svc.rollbacks.rollback("recommender")
    except RegistryError as exc:
        print(f"  rollback again -> {exc.code}: {exc.message}")
    result = d.svc.snapshots.restore(snap["id"], actor="main.py")
    print(f"  restore {snap['id']} -> {d.svc.traffic.get('recommender').weights} "
          f"(recorded as rollback, trigger {result['rollbacks'][0]['trigger']})")
    rows, _ = d.svc.rollbacks.list("recommender")
    print(table([{**r, "when": r["created_at"][11:19]} for r in rows],
                ["when", "trigger", "from_version", "to_version", "reason"]))


@section("metrics", "Latency percentiles, success rate, tokens, version comparison")
def demo_metrics(d: Demo) -> None:
    import random
    rng = random.Random(7)
    for i in range(2000):
        d.svc.tracker.track_prediction("sentiment-analyzer", "1.0.0",
                                       latency=rng.lognormvariate(-1.5, 0.4),
                                       input_tokens=rng.randint(20, 60),
                                       output_tokens=rng.randint(1, 5), success=i % 50 != 0)
        d.svc.tracker.track_prediction("sentiment-analyzer", "1.1.0",
                                       latency=rng.lognormvariate(-1.8, 0.3),
                                       input_tokens=rng.randint(20, 60),
                                       output_tokens=rng.randint(1, 5), success=i % 200 != 0)
    rows = []
    for version, m in sorted(d.svc.tracker.get_metrics("sentiment-analyzer").items()):
        rows.append({"version": version, "requests": m["requests"],
                     "success %": f"{m['success_rate']:.1f}",
                     "p50 s": f"{m['p50_latency']:.3f}", "p95 s": f"{m['p95_latency']:.3f}",
                     "p99 s": f"{m['p99_latency']:.3f}", "tokens": m["total_tokens"]})
    print(table(rows, ["version", "requests", "success %", "p50 s", "p95 s", "p99 s", "tokens"]))
    diff = d.svc.tracker.compare_versions("sentiment-analyzer", "1.0.0", "1.1.0")["diff"]
    print(f"  1.1.0 vs 1.0.0: p95 x{diff['p95_latency']['ratio']:.2f}, error rate "
          f"{diff['error_rate']['delta']:+.3f}")


@section("alerts", "Alert rules evaluated on the aggregates")
def demo_alerts(d: Demo) -> None:
    for i in range(100):
        d.svc.tracker.track_prediction("flaky", "0.1.0", latency=0.05, success=i % 4 != 0)
    d.svc.alerts.evaluate("flaky")
    rows = []
    for scope in (None,):
        alerts, _ = d.svc.alerts.list_alerts(scope, active=True)
        rows += alerts
    print(table(rows, ["model", "version", "rule", "severity", "message"]) if rows
          else "  no active alerts")


@section("cost", "What each version costs: prices, cost gate, comparison, spend, budgets")
def demo_cost(d: Demo) -> None:
    # Offline: the real google-genai SDK talks to the local fake Gemini server of the tests,
    # which reports a fixed usage per call (as Gemini's usageMetadata).
    # The services of this section are wired with settings that point at it (same database).
    from errors import BudgetExceeded
    from tests.fake_gemini import FakeGemini
    from wiring import Services
    model = "assistant-cost"
    with FakeGemini() as fake:
        svc = Services(d.settings.replace(gemini_base_url=fake.url,
                                          gemini_api_key="offline-fake"), database=d.database)
        for model_id in ("gemini-2.5-flash-lite", "gemini-2.5-flash"):
            fake.set_usage(model_id, prompt=1200, candidates=300)
        d.registry.register_model(model, "Gemini; 1.1.0 moves from flash-lite to flash")
        d.registry.register_version(model, "1.0.0", "stable",
                                    config={"model": "gemini-2.5-flash-lite"})
        d.registry.register_version(model, "1.1.0", config={"model": "gemini-2.5-flash"})
        for version in ("1.0.0", "1.1.0"):
            q = svc.prices.quote(model, version)
            print(f"  {version}: ${q.price.as_usd()['input_per_1m']}/1M in, "
                  f"${q.price.as_usd()['output_per_1m']}/1M out ({q.source} table, "
                  f"from {q.as_dict()['effective_from'][:10]})")
        svc.deployments.deploy(model, "1.0.0")
        svc.deployments.tick()
        out = svc.gateway.predict(model, "Summarise the release notes", api_key="team-a")
        print(f"  one prediction: usage {out['usage']}")
        dep = svc.deployments.deploy(model, "1.1.0", "canary", steps=[50, 100], analysis={
            "min_requests": 10, "interval_s": 60, "deadline_s": 120, "max_cost_ratio": 2.0})
        svc.deployments.tick()                     # health check, then 50% to 1.1.0
        for i in range(60):
            svc.gateway.predict(model, "hello", key=f"user-{i}",
                                api_key="team-a" if i % 3 else "team-b")
        svc.deployments.tick()
        state = svc.deployments.get(dep)
        print(f"  canary 1.1.0 with max_cost_ratio 2 -> {state['state']}: {state['reason'][:90]}")
        c = svc.tracker.compare_versions(model, "1.0.0", "1.1.0")
        rows = [{"version": v, "requests": c[k]["requests"],
                 "cost $": f"{c[k]['cost_usd']:.6f}",
                 "$ per request": f"{c[k]['cost_per_request_usd']:.6f}",
                 "$ per 1k requests": f"{c[k]['cost_per_1k_requests_usd']:.3f}"}
                for k, v in (("v1", "1.0.0"), ("v2", "1.1.0"))]
        print(table(rows, ["version", "requests", "cost $", "$ per request",
                           "$ per 1k requests"]))
        print(f"  1.1.0 vs 1.0.0: cost per request x"
              f"{c['diff']['cost_per_request_usd']['ratio']:.2f}")
        report = svc.spend.report("key,version", model=model)
        print("  spend this month by key and version (exact integer micro-USD sums):")
        print(table(report["rows"], ["key", "version", "requests", "cost_micro_usd"]))
        spent_b = sum(r["cost_micro_usd"] for r in report["rows"] if r["key"] == "team-b")
        svc.budgets.put("key", "team-b", "day", hard_limit_usd=spent_b / 1e6)
        try:
            svc.gateway.predict(model, "hello", api_key="team-b")
        except BudgetExceeded as exc:
            print(f"  team-b over its daily budget -> {exc.code} (429): {exc.message[:80]}")
        served = svc.gateway.predict(model, "hello", api_key="team-a")
        print(f"  team-a is still served by {served['version']}")
        svc.collector.close()
        svc.loader.close()


@section("gemini", "A Gemini version through the google-genai SDK (needs GEMINI_API_KEY)")
def demo_gemini(d: Demo) -> None:
    if not d.settings.gemini_api_key:
        print("  skipped: GEMINI_API_KEY is not set (set it, or GOOGLE_API_KEY, to run this "
              "section against Gemini)")
        return
    d.registry.register_model("assistant", "Gemini with a reviewed prompt")
    d.registry.register_version("assistant", "1.0.0", "stable",
                                config={"system_instruction": "Answer in one sentence.",
                                        "temperature": 0.2, "max_output_tokens": 64})
    out = d.svc.gateway.predict("assistant", "What is a canary deployment?")
    print(f"  {out['output']!r}\n  usage {out['usage']}, {out['latency']:.2f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Model Registry demonstrations (no key, no network).",
        epilog="sections:\n" + "\n".join(f"  {k:12} {t}" for k, (t, _) in SECTIONS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", choices=[[], *SECTIONS], metavar="section",
                        help="sections to run (default: all)")
    parser.add_argument("--data-dir", type=Path, help="keep the database here (default: a "
                        "temporary folder)")
    args = parser.parse_args(argv)
    chosen = args.sections or list(SECTIONS)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="model-registry-demo-"))
    from errors import ConfigurationError
    try:
        demo = Demo(data_dir)
    except ConfigurationError as exc:   # the entry point stops with the message, no traceback
        parser.exit(2, f"configuration error: {exc.message}\n")
    started = time.perf_counter()
    for name in chosen:
        title, fn = SECTIONS[name]
        print(f"\n== {name}: {title}")
        fn(demo)
    demo.svc.close()
    print(f"\nall {len(chosen)} sections done in {time.perf_counter() - started:.1f}s "
          f"(data in {data_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
