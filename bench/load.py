"""Load test of `rag serve` on loopback: concurrent clients asking questions from eval/*.jsonl.

    python bench/load.py                       # 16 clients × 50 requests on RAG_DATA_DIR
    python bench/load.py --clients 4 --requests 10 --out bench/out/load.md

It starts `rag serve` on a free 127.0.0.1 port (rate limit off for itself), waits for
/api/health, asks every distinct question once alone (the reference), then starts a
fresh server (empty caches, unless --warm) and lets the clients ask concurrently,
checking that each answer has exactly the reference's citations and quotes (no
cross-talk between requests). Bounded in requests and time;
the server is stopped at the end. Prints a table; exits 1 on errors or mismatches.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only, whatever the environment says
MAX_RSS_GROWTH = 0.10  # server RSS may grow at most 10 % from the 2nd to the last quarter


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def load_bodies(eval_dir: Path, limit: int, seed: int = 7) -> list[dict[str, Any]]:
    """Request bodies mixing Chinese, English, follow-ups (with history) and unanswerable items."""
    items = []
    for path in sorted(eval_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                items.append(json.loads(line))
    groups: dict[str, list[dict[str, Any]]] = {"zh": [], "en": [], "follow-up": [], "unanswerable": []}
    for it in items:
        kind = ("follow-up" if it.get("history") else "unanswerable" if not it.get("answerable", True)
                else "en" if it.get("lang") == "en" else "zh")
        groups[kind].append(it)
    rng = random.Random(seed)
    picked: list[dict[str, Any]] = []
    while len(picked) < limit and any(groups.values()):
        for kind in groups:  # round robin: every kind is represented even in a small run
            if groups[kind] and len(picked) < limit:
                it = groups[kind].pop(rng.randrange(len(groups[kind])))
                body: dict[str, Any] = {"question": it["question"]}
                if it.get("history"):
                    body["history"] = it["history"]
                picked.append({"kind": kind, "body": body})
    return picked


def post(port: int, body: dict[str, Any], timeout: float) -> tuple[int, Any, float]:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/api/ask", body=data, headers={"content-type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        status = resp.status
    finally:
        conn.close()
    elapsed = time.perf_counter() - t0
    try:
        return status, json.loads(raw), elapsed
    except ValueError:
        return status, None, elapsed


def chat_ask(port: int, inputs: list[Any], timeout: float) -> list[Any]:
    """One question through the web chat's own endpoint (Gradio's queue, a new session
    each call), as a browser sends it; the outputs of its last event.

    Plain HTTP instead of gradio_client: that client spent 86 ms of CPU per question
    (the server 54 ms) on the same two cores, which measured the load generator."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/gradio_api/call/ask", body=json.dumps({"data": inputs}).encode(),
                     headers={"content-type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {raw[:200]!r}")
        event_id = json.loads(raw)["event_id"]
        conn.request("GET", f"/gradio_api/call/ask/{event_id}")
        resp = conn.getresponse()
        stream = resp.read().decode("utf-8")
    finally:
        conn.close()
    event, data = "", ""
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
    if event != "complete":
        raise RuntimeError(f"the chat ended with event {event!r}: {data[:200]}")
    return json.loads(data)


def openai_ask(port: int, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One question through the OpenAI-compatible endpoint, streamed as a chat client asks it;
    the answer put together from its chunks (text, then the citations of the last one)."""
    messages = [*body.get("history", []), {"role": "user", "content": body["question"]}]
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", headers={"content-type": "application/json"},
                     body=json.dumps({"model": "etdz-extractive", "stream": True, "messages": messages},
                                     ensure_ascii=False).encode("utf-8"))
        resp = conn.getresponse()
        raw = resp.read().decode("utf-8")
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {raw[:200]}")
    events = [line[5:].strip() for line in raw.splitlines() if line.startswith("data:")]
    if not events or events[-1] != "[DONE]":
        raise RuntimeError(f"the stream did not end with [DONE]: {raw[-200:]}")
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    last = chunks[-1]
    return {"abstained": last["etdz"]["abstained"], "answer": text,
            "citations": last["choices"][0]["delta"]["citations"]}


def fingerprint(answer: dict[str, Any]) -> tuple[Any, ...]:
    """What must not differ between a concurrent and a lone answer."""
    return (answer.get("abstained"), answer.get("answer"),
            tuple((c["label"], tuple(c["quotes"])) for c in answer.get("citations", [])))


def mismatch(got: tuple[Any, ...], expected: tuple[Any, ...]) -> str:
    """Where a concurrent answer differs from the lone one (for the report)."""
    names = ("abstained", "answer", "citations")
    return "; ".join(f"{n}: got {str(g)[:160]!r}, alone {str(e)[:160]!r}"
                     for n, g, e in zip(names, got, expected, strict=True) if g != e)


def rss_of(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


@dataclass
class LoadReport:
    clients: int
    requests_per_client: int
    distinct_questions: int
    requests: int = 0
    errors: int = 0
    mismatches: int = 0
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    rss_mb: list[float] = field(default_factory=list)  # start, then after each quarter
    error_samples: list[str] = field(default_factory=list)
    chat_requests: int = 0  # the Gradio chat, asked at the same time through its HTTP endpoint
    chat_errors: int = 0
    chat_mismatches: int = 0
    openai_requests: int = 0  # streaming chat-completions clients at the same time
    openai_errors: int = 0
    openai_mismatches: int = 0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000

    @property
    def rss_growth(self) -> float:
        """Growth from the end of the second quarter to the end of the last."""
        if len(self.rss_mb) < 5:
            return 0.0
        return (self.rss_mb[4] - self.rss_mb[2]) / self.rss_mb[2]

    def table(self) -> str:
        rows = [
            ("clients × requests", f"{self.clients} × {self.requests_per_client} "
                                   f"({self.distinct_questions} distinct questions)"),
            ("requests", str(self.requests)),
            ("errors (non-2xx, bad JSON, timeouts)", str(self.errors)),
            ("answers differing from the lone answer", str(self.mismatches)),
            ("latency p50 / p95 / p99", f"{self.percentile(50):.0f} / {self.percentile(95):.0f} / "
                                        f"{self.percentile(99):.0f} ms"),
            ("mean latency", f"{statistics.fmean(self.latencies) * 1000:.0f} ms" if self.latencies else "-"),
            ("throughput", f"{self.requests / self.wall_s:.1f} requests/s" if self.wall_s else "-"),
            ("server RSS start / Q1 / Q2 / Q3 / Q4", " / ".join(f"{m:.0f}" for m in self.rss_mb) + " MB"),
            ("RSS growth Q2 → Q4", f"{self.rss_growth * 100:+.1f} %"),
            ("web chat at the same time: requests / errors / differing", f"{self.chat_requests} / "
             f"{self.chat_errors} / {self.chat_mismatches}"),
            ("streamed /v1/chat/completions at the same time: requests / errors / differing",
             f"{self.openai_requests} / {self.openai_errors} / {self.openai_mismatches}"),
        ]
        return "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)

    @property
    def ok(self) -> bool:
        """The pass criteria: no errors, no cross-talk, memory flat in the second half."""
        return (self.errors == 0 and self.mismatches == 0 and self.requests > 0
                and self.chat_errors == 0 and self.chat_mismatches == 0
                and self.openai_errors == 0 and self.openai_mismatches == 0
                and self.rss_growth <= MAX_RSS_GROWTH)


def start_server(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {**env, "RAG_RATE_LIMIT": "0", "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("RAG_AUTH_TOKEN", None)  # loopback: no token needed, and none leaks into the log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--host", HOST, "--port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rag serve exited with code {proc.returncode} before it was healthy")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/api/health")
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"rag serve was not healthy within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def drive(port: int, pid: int, bodies: list[dict[str, Any]], reference: dict[int, tuple[Any, ...]],
          clients: int, per_client: int, deadline_s: float, request_timeout: float,
          chat_clients: int = 0, chat_requests: int = 0, openai_clients: int = 0,
          openai_requests: int = 0) -> LoadReport:
    report = LoadReport(clients, per_client, len(bodies))
    total = clients * per_client
    lock = threading.Lock()
    done = [0]
    quarter_marks = [total * q // 4 for q in (1, 2, 3, 4)]
    report.rss_mb.append(rss_of(pid) / 2**20)
    stop_at = time.monotonic() + deadline_s

    def client(cid: int) -> None:
        rng = random.Random(cid)
        for _ in range(per_client):
            if time.monotonic() > stop_at:
                return
            i = rng.randrange(len(bodies))
            try:
                status, data, elapsed = post(port, bodies[i]["body"], request_timeout)
            except OSError as exc:
                status, data, elapsed = 0, None, request_timeout
                note = f"{type(exc).__name__}: {exc}"
            else:
                note = f"HTTP {status}: {str(data)[:200]}"
            with lock:
                report.requests += 1
                report.latencies.append(elapsed)
                if status != 200 or not isinstance(data, dict):
                    report.errors += 1
                    if len(report.error_samples) < 5:
                        report.error_samples.append(note)
                elif fingerprint(data) != reference[i]:
                    report.mismatches += 1
                    if len(report.error_samples) < 5:
                        report.error_samples.append(f"mismatch on {bodies[i]['body']['question']!r}: "
                                                    f"{mismatch(fingerprint(data), reference[i])}")
                done[0] += 1
                if quarter_marks and done[0] >= quarter_marks[0]:
                    quarter_marks.pop(0)
                    report.rss_mb.append(rss_of(pid) / 2**20)

    def record(kind: str, i: int, got: tuple[Any, ...] | None, problem: str) -> None:
        """A web chat ("chat") or chat-completions ("openai") answer, checked against the lone one."""
        with lock:
            setattr(report, f"{kind}_requests", getattr(report, f"{kind}_requests") + 1)
            if problem or (got is not None and got != reference[i]):
                field_name = f"{kind}_errors" if problem else f"{kind}_mismatches"
                setattr(report, field_name, getattr(report, field_name) + 1)
                if len(report.error_samples) < 5:
                    report.error_samples.append(problem or f"{kind} mismatch on {bodies[i]['body']['question']!r}: "
                                                           f"{mismatch(got or (), reference[i])}")

    # The web chat shares the Assistant with the API: a few chat users at the same time,
    # checked against the same lone answers.
    chat_items = [i for i, b in enumerate(bodies) if "history" not in b["body"]]

    def chat_client(cid: int) -> None:
        rng = random.Random(1000 + cid)
        for _ in range(chat_requests):
            if time.monotonic() > stop_at or not chat_items:
                return
            i = rng.choice(chat_items)
            # Each call is a new conversation: in one session the earlier turns are the
            # history, and a question with "it"/"its" would be read as a follow-up.
            try:
                # (question, doc_ids, doc_types, in force only, mode, k, language): the API's defaults
                out = chat_ask(port, [bodies[i]["body"]["question"], [], [], True, "extractive", 5, "auto"],
                               request_timeout)
                raw = out[4] if isinstance(out, list) and len(out) > 4 else None
                problem = "" if isinstance(raw, dict) else f"chat returned no answer: {str(out)[:200]}"
            except Exception as exc:  # noqa: BLE001 - any failure is an error to report
                raw, problem = None, f"chat failed: {type(exc).__name__}: {exc}"[:300]
            record("chat", i, fingerprint(raw) if raw is not None else None, problem)

    def openai_client(cid: int) -> None:
        rng = random.Random(2000 + cid)
        for _ in range(openai_requests):
            if time.monotonic() > stop_at:
                return
            i = rng.randrange(len(bodies))
            try:
                got, problem = fingerprint(openai_ask(port, bodies[i]["body"], request_timeout)), ""
            except Exception as exc:  # noqa: BLE001 - any failure is an error to report
                got, problem = (), f"chat completion failed: {type(exc).__name__}: {exc}"[:300]
            record("openai", i, got, problem)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    threads += [threading.Thread(target=chat_client, args=(c,), daemon=True) for c in range(chat_clients)]
    threads += [threading.Thread(target=openai_client, args=(c,), daemon=True) for c in range(openai_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, stop_at - time.monotonic() + request_timeout))
    report.wall_s = time.perf_counter() - t0
    while len(report.rss_mb) < 5:  # stopped early: the last reading stands for the rest
        report.rss_mb.append(rss_of(pid) / 2**20)
    return report


def run_load(*, clients: int = 16, requests: int = 50, distinct: int = 300, cold: bool = True,
             chat_clients: int = 2, chat_requests: int = 20, openai_clients: int = 2, openai_requests: int = 20,
             env: dict[str, str] | None = None,
             deadline_s: float = 900, request_timeout: float = 60, startup_timeout: float = 300,
             log_path: Path = ROOT / "bench" / "out" / "load-server.log") -> LoadReport:
    env = dict(os.environ if env is None else env)
    bodies = load_bodies(ROOT / "eval", distinct)
    port = free_port()
    proc = start_server(port, env, log_path)
    try:
        wait_healthy(port, proc, startup_timeout)
        reference: dict[int, tuple[Any, ...]] = {}
        for i, b in enumerate(bodies):  # each question alone first: the answers to match
            status, data, _ = post(port, b["body"], request_timeout)
            if status != 200 or not isinstance(data, dict):
                raise RuntimeError(f"the lone question {b['body']['question']!r} failed: HTTP {status} {data}")
            reference[i] = fingerprint(data)
        if cold:
            # A fresh server, so the load meets empty in-memory caches (query vectors,
            # tokenisation) as real traffic of new questions would.
            stop_server(proc)
            port = free_port()
            proc = start_server(port, env, log_path)
            wait_healthy(port, proc, startup_timeout)
        return drive(port, proc.pid, bodies, reference, clients, requests, deadline_s, request_timeout,
                     chat_clients, chat_requests, openai_clients, openai_requests)
    finally:
        stop_server(proc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=50, help="requests per client")
    p.add_argument("--distinct", type=int, default=300,
                   help="distinct questions drawn from eval/*.jsonl (mostly new to the server)")
    p.add_argument("--chat-clients", type=int, default=2, help="web chat users (Gradio queue over HTTP) at the same time")
    p.add_argument("--chat-requests", type=int, default=20, help="questions per chat user")
    p.add_argument("--openai-clients", type=int, default=2,
                   help="streaming /v1/chat/completions clients at the same time")
    p.add_argument("--openai-requests", type=int, default=20, help="questions per chat-completions client")
    p.add_argument("--warm", action="store_true",
                   help="keep the server that answered the lone questions (its caches are warm)")
    p.add_argument("--deadline", type=float, default=900, help="seconds before the clients stop asking")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "load.md")
    args = p.parse_args()
    report = run_load(clients=args.clients, requests=args.requests, distinct=args.distinct,
                      cold=not args.warm, chat_clients=args.chat_clients,
                      chat_requests=args.chat_requests, openai_clients=args.openai_clients,
                      openai_requests=args.openai_requests, deadline_s=args.deadline)
    text = report.table()
    if report.error_samples:
        text += "\n\nfirst problems:\n" + "\n".join(f"- {s}" for s in report.error_samples)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"# Load test ({time.strftime('%Y-%m-%d %H:%M')})\n\n{text}\n", encoding="utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
