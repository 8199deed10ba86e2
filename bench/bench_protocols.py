"""The client protocols (run by hand): ``python bench/bench_protocols.py [--requests 400]``.

1. **Added latency of the OpenAI-compatible gateway.** The fake Gemini (``tests/fake_gemini.py``,
   in its own process) is called directly (``generateContent`` / ``streamGenerateContent``) and
   through the gateway (``/v1/chat/completions``, plain and ``stream: true``), one request at a
   time, the calls interleaved so that both see the same machine. Added latency = the
   gateway's percentile minus the direct one (p50 and p99). Targets: p50 ≤ 1 ms, p99 ≤ 5 ms.
2. **LiteLLM's proxy, side by side**: ``litellm[proxy]`` is installed by this benchmark into
   its own virtualenv (never into the project's requirements) and configured for the same fake
   backend (``gemini/…`` with ``api_base``); its added latency is measured in the same
   interleaved loop. When it cannot be installed or started, the row says why.
3. **The gateway's own cost in process** (the whole WSGI path against an instant provider),
   which the loaded shared machine cannot blur as it blurs the cross-process figures above.
4. **Open Inference Protocol throughput vs predict** on the same server and ONNX model: JSON
   tensors and binary tensors against ``POST /api/models/{m}/predict``.

Both servers are gunicorn (gthread, 1 worker); the benchmark client is this process.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_http import throughput  # noqa: E402
from bench.report import Row, print_rows  # noqa: E402
from tests.support import free_port, wait_ready  # noqa: E402

FAKE_MODEL = "gemini-bench"
PROMPT = "hello there general kenobi"
LITELLM_KEY = "sk-bench-only-key"
LITELLM_VENV = Path(tempfile.gettempdir()) / "model-registry-bench" / "litellm-venv"


# -- processes ---------------------------------------------------------------------------------

def wait_http(port: int, path: str, proc: subprocess.Popen, what: str, timeout: float) -> None:
    wait_ready(f"http://127.0.0.1:{port}{path}", proc, timeout, what=what,
               ready=lambda r: r.status_code < 500)


def start_fake() -> tuple[subprocess.Popen, str]:
    code = ("import sys, time; from tests.fake_gemini import FakeGemini;"
            "f = FakeGemini().start(); print(f.url, flush=True); time.sleep(10**6)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def prepare(data: Path) -> None:
    """A Gemini model (``chat``) and an ONNX model (``iris``), both stable."""
    subprocess.run([sys.executable, "-c", (
        "from wiring import build_services; from config import Settings;"
        "from models.onnx_examples import linear_model; from pathlib import Path;"
        f"s = build_services(Settings.from_env({{'data_dir': Path({str(data)!r})}}));"
        "s.registry.register_model('chat');"
        f"s.registry.register_version('chat', '1.0.0', 'stable', config={{'model': {FAKE_MODEL!r}}});"
        "s.registry.register_model('iris');"
        "dg, n = s.artifacts.put_bytes(linear_model());"
        "s.registry.register_version('iris', '1.0.0', 'stable', provider='onnx');"
        "s.registry.attach_artifact('iris', '1.0.0', dg, n); s.close()")],
        cwd=ROOT, check=True, env={**os.environ, "REGISTRY_DATA_DIR": str(data)})


def start_gateway(data: Path, fake_url: str, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "REGISTRY_DATA_DIR": str(data), "AUTO_ROLLBACK": "off",
           "GOOGLE_GEMINI_BASE_URL": fake_url, "GEMINI_API_KEY": "fake-key",
           "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads",
         str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning",
         "api.app:create_app()"], cwd=ROOT, env=env)
    wait_http(port, "/healthz", proc, "the gateway", 30)
    return proc, port


def litellm_binary() -> tuple[Path | None, str]:
    """The ``litellm`` CLI of the benchmark's own virtualenv, installed on first use."""
    binary = LITELLM_VENV / "bin" / "litellm"
    if binary.exists():
        return binary, ""
    LITELLM_VENV.parent.mkdir(parents=True, exist_ok=True)
    print(f"installing litellm[proxy] into {LITELLM_VENV} (once; a few minutes)...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(LITELLM_VENV)], check=True,
                       capture_output=True, timeout=300)
        pip = subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q",
                              "litellm[proxy]"], capture_output=True, text=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not install litellm[proxy]: {exc}"
    if pip.returncode != 0 or not binary.exists():
        last = (pip.stderr or pip.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"pip install litellm[proxy] failed: {last[0][:120]}"
    return binary, ""


def start_litellm(binary: Path, fake_url: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: chat\n"
        "    litellm_params:\n"
        f"      model: gemini/{FAKE_MODEL}\n"
        f"      api_base: {fake_url}/v1beta\n"  # LiteLLM appends /models/{model}:…
        "      api_key: fake-key\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n")
    env = {**os.environ, "LITELLM_LOG": "ERROR", "NO_PROXY": "127.0.0.1,localhost",
           "LITELLM_TELEMETRY": "False", "DISABLE_ADMIN_UI": "True"}
    log = (workdir / "litellm.log").open("wb")
    proc = subprocess.Popen([str(binary), "--config", str(config), "--host", "127.0.0.1",
                             "--port", str(port), "--num_workers", "1"], cwd=workdir, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    wait_http(port, "/health/liveliness", proc, "the LiteLLM proxy", 120)
    return proc, port


# -- measurements ------------------------------------------------------------------------------

class Target:
    """One endpoint called over one keep-alive connection; each call reads the whole answer."""

    def __init__(self, port: int, path: str, body: dict, headers: dict[str, str]) -> None:
        self.port, self.path = port, path
        self.body = json.dumps(body).encode()
        self.headers = {"Content-Type": "application/json", **headers}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.times: list[float] = []
        self.failed = 0

    def call(self) -> None:
        started = time.perf_counter()
        try:
            self.conn.request("POST", self.path, self.body, self.headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.failed += 1
            return
        elapsed = time.perf_counter() - started
        if response.status != 200 or b"error" in data[:200]:
            self.failed += 1
        else:
            self.times.append(elapsed)

    def percentiles(self) -> tuple[float, float]:
        p50, p99 = np.percentile(self.times, [50, 99]) if self.times else (np.nan, np.nan)
        return float(p50), float(p99)


class SdkTarget(Target):
    """The fake called through ``google-genai`` in this process: the same SDK call the
    gateway's provider makes, so gateway − SDK is the gateway's own cost."""

    def __init__(self, fake_url: str, stream: bool) -> None:
        from google import genai
        from google.genai import types
        self.client = genai.Client(api_key="fake-key", http_options=types.HttpOptions(
            base_url=fake_url, retry_options=types.HttpRetryOptions(attempts=1)))
        self.stream = stream
        self.times, self.failed = [], 0

    def call(self) -> None:
        started = time.perf_counter()
        try:
            if self.stream:
                list(self.client.models.generate_content_stream(model=FAKE_MODEL,
                                                                contents=PROMPT))
            else:
                self.client.models.generate_content(model=FAKE_MODEL, contents=PROMPT)
        except Exception:  # noqa: BLE001 - counted, the run goes on
            self.failed += 1
            return
        self.times.append(time.perf_counter() - started)


def targets_for(fake_url: str, gateway_port: int, litellm_port: int | None
                ) -> dict[str, dict[str, Target]]:
    fake_port = urlsplit(fake_url).port or 80
    gemini_body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
    key = {"x-goog-api-key": "fake-key"}
    chat = {"model": "chat", "messages": [{"role": "user", "content": PROMPT}]}
    stream = {**chat, "stream": True, "stream_options": {"include_usage": True}}
    base = f"/v1beta/models/{FAKE_MODEL}"
    found = {
        "plain": {"direct": Target(fake_port, f"{base}:generateContent", gemini_body, key),
                  "sdk": SdkTarget(fake_url, stream=False),
                  "gateway": Target(gateway_port, "/v1/chat/completions", chat, {})},
        "streaming": {"direct": Target(fake_port, f"{base}:streamGenerateContent?alt=sse",
                                       gemini_body, key),
                      "sdk": SdkTarget(fake_url, stream=True),
                      "gateway": Target(gateway_port, "/v1/chat/completions", stream, {})},
    }
    if litellm_port is not None:
        auth = {"Authorization": f"Bearer {LITELLM_KEY}"}
        found["plain"]["litellm"] = Target(litellm_port, "/v1/chat/completions", chat, auth)
        found["streaming"]["litellm"] = Target(litellm_port, "/v1/chat/completions", stream,
                                               auth)
    return found


def added_latency(targets: dict[str, dict[str, Target]], requests: int) -> list[Row]:
    for group in targets.values():   # warm up: connections, SDK clients, first loads
        for target in group.values():
            for _ in range(20):
                target.call()
            target.times.clear()
            target.failed = 0
    for _ in range(requests):        # interleaved: every target sees the same machine state
        for group in targets.values():
            for target in group.values():
                target.call()
    rows: list[Row] = []
    for mode, group in targets.items():
        d50, d99 = group["direct"].percentiles()
        rows.append((f"fake Gemini called directly, {mode} (p50 / p99)",
                     f"{d50 * 1e3:.2f} / {d99 * 1e3:.2f} ms", ""))
        s50, s99 = group["sdk"].percentiles()
        for name, label in (("sdk", "the google-genai SDK call alone"),
                            ("gateway", "this gateway"), ("litellm", "LiteLLM proxy")):
            if name not in group:
                continue
            p50, p99 = group[name].percentiles()
            target = {"gateway": "p50 ≤ 1 ms, p99 ≤ 5 ms", "litellm": "side by side"}.get(
                name, "")
            failed = f", {group[name].failed} failed" if group[name].failed else ""
            rows.append((f"added by {label}, {mode} (p50 / p99)",
                         f"{(p50 - d50) * 1e3:.2f} / {(p99 - d99) * 1e3:.2f} ms{failed}", target))
        g50, g99 = group["gateway"].percentiles()
        rows.append((f"gateway's own cost over its SDK call, {mode} (p50 / p99)",
                     f"{(g50 - s50) * 1e3:.2f} / {(g99 - s99) * 1e3:.2f} ms", ""))
    return rows


def own_cost_in_process(n: int) -> list[Row]:
    """The gateway's own cost, free of network and scheduling noise: the whole WSGI path of
    ``/v1/chat/completions`` (auth hook, body checks, pydantic, translation, routing, loader,
    tracking, serialisation) in process, against a provider whose answer is instant (the
    loaded Gemini provider's ``chat`` replaced on that one instance, for this measurement
    only), paired with a direct call of it; median of the differences."""
    import statistics

    from api.app import create_app
    from models.base_model import ChatRequest, Delta, Message, Prediction, Usage

    with tempfile.TemporaryDirectory() as d:
        app = create_app({"TESTING": True, "data_dir": Path(d)})
        svc = app.extensions["model_registry"]
        svc.registry.register_model("chat")
        svc.registry.register_version("chat", "1.0.0", "stable", config={"model": FAKE_MODEL})
        provider = svc.loader.get("chat", "1.0.0")
        answer = Prediction("echo: " + PROMPT, Usage(4, 5, 9), "stop")
        provider.chat = lambda request: answer  # type: ignore[method-assign]
        pieces = [Delta("echo:"), Delta(" hello"), Delta(" there", "stop", answer.usage)]
        provider.chat_stream = lambda request: iter(pieces)  # type: ignore[method-assign]
        client = app.test_client()
        request = ChatRequest((Message("user", PROMPT),))
        results = {}
        for mode, body in (("plain", {}), ("streaming", {"stream": True})):
            payload = {"model": "chat", "messages": [{"role": "user", "content": PROMPT}],
                       **body}
            diffs = []
            for i in range(n + 200):
                t0 = time.perf_counter_ns()
                provider.chat(request)
                t1 = time.perf_counter_ns()
                r = client.post("/v1/chat/completions", json=payload)
                data = r.get_data()
                t2 = time.perf_counter_ns()
                assert r.status_code == 200 and b'"error"' not in data, data
                if i >= 200:  # warm-up
                    diffs.append((t2 - t1) - (t1 - t0))
            results[mode] = statistics.median(diffs) / 1e6, float(np.percentile(diffs, 99)) / 1e6
        svc.close()
    return [(f"gateway's own cost in process, {mode} (p50 / p99)",
             f"{p50:.2f} / {p99:.2f} ms", "p50 ≤ 1 ms, p99 ≤ 5 ms")
            for mode, (p50, p99) in results.items()]


def oip_throughput(port: int, seconds: float, clients: int) -> list[Row]:
    x = np.asarray([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    predict = json.dumps({"input": x.tolist()}).encode()
    oip_json = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                       "data": x.reshape(-1).tolist()}]}).encode()
    head = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
    runs = {"predict": ("/api/models/iris/predict", predict, None),
            "OIP JSON": ("/v2/models/iris/infer", oip_json, {}),
            "OIP binary": ("/v2/models/iris/infer", head + x.tobytes(),
                           {"Inference-Header-Content-Length": str(len(head))})}
    for path, body, headers in runs.values():
        throughput(port, path, body, clients, 0.5, headers)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(2):  # alternate, so all see the same machine state
        for name, (path, body, headers) in runs.items():
            rate, failed = throughput(port, path, body, clients, seconds / 2, headers)
            assert failed == 0, f"{name}: {failed} failed"
            rates[name].append(rate)
    mean = {name: sum(r) / len(r) for name, r in rates.items()}
    return [("ONNX predict over HTTP", f"{mean['predict']:.0f} req/s", ""),
            ("OIP infer, JSON tensors", f"{mean['OIP JSON']:.0f} req/s",
             f"{mean['OIP JSON'] / mean['predict']:.2f}x predict"),
            ("OIP infer, binary tensors", f"{mean['OIP binary']:.0f} req/s",
             f"{mean['OIP binary'] / mean['predict']:.2f}x predict")]


def main(requests: int = 400, seconds: float = 4.0, clients: int = 4,
         litellm: bool = True) -> list[Row]:
    procs: list[subprocess.Popen] = []
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        try:
            fake, fake_url = start_fake()
            procs.append(fake)
            prepare(work / "data")
            gateway, gateway_port = start_gateway(work / "data", fake_url, threads=8)
            procs.append(gateway)
            litellm_port, skipped = None, "disabled (--no-litellm)"
            if litellm:
                binary, skipped = litellm_binary()
                if binary is not None:
                    try:
                        proxy, litellm_port = start_litellm(binary, fake_url, work)
                        procs.append(proxy)
                    except RuntimeError as exc:
                        log = (work / "litellm.log").read_text(errors="replace")[-300:]
                        skipped = f"{exc}: {log.strip().splitlines()[-1:] or ''}"
            rows += added_latency(targets_for(fake_url, gateway_port, litellm_port), requests)
            if litellm_port is None:
                rows.append(("LiteLLM proxy, side by side", "skipped", skipped))
            rows += oip_throughput(gateway_port, seconds, clients)
            rows += own_cost_in_process(requests * 5)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"{requests} interleaved sequential requests per target; OIP: {clients} keep-alive "
          f"clients, {seconds:g}s per endpoint; gunicorn gthread, 1 worker x 8 threads")
    return print_rows(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-litellm", action="store_true")
    a = parser.parse_args()
    main(a.requests, a.seconds, a.clients, not a.no_litellm)
