"""Access control of `rag serve`: loopback by default, a token off loopback, Bearer on the
API, a login on the UI, a per-client rate limit, and the costly buttons off unless enabled."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from rag.cli import main
from rag.errors import ConfigError
from rag.settings import from_env
from ui.api import RateLimiter, token_matches
from ui.app import build_app, check_exposure
from ui.demo import DemoAssistant

TOKEN = "s3cret-token-for-tests"
ASK = {"question": "M0用地能建住宅吗？"}


@pytest.fixture(scope="module")
def demo() -> DemoAssistant:
    return DemoAssistant()


@pytest.fixture(scope="module")
def locked(demo):
    with TestClient(build_app(demo, allow_upload=True, allow_benchmark=True, auth_token=TOKEN)) as c:
        yield c


def test_loopback_needs_no_token_and_other_addresses_do():
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(host, "", insecure=False)
    with pytest.raises(ConfigError) as err:
        check_exposure("0.0.0.0", "", insecure=False)
    assert "RAG_AUTH_TOKEN" in err.value.message and "--insecure" in err.value.hint
    check_exposure("0.0.0.0", TOKEN, insecure=False)
    check_exposure("192.168.1.10", "", insecure=True)


def test_rag_serve_refuses_a_public_address_before_loading(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("RAG_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "no-index"))  # would fail later if it loaded
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to serve on 0.0.0.0 without RAG_AUTH_TOKEN") and "Traceback" not in err
    assert not (tmp_path / "no-index").exists()
    assert build_parser_default_host() == "127.0.0.1"


def build_parser_default_host() -> str:
    from rag.cli import build_parser

    return build_parser().parse_args(["serve"]).host


def test_settings_read_token_and_rate_limit_without_showing_the_token():
    s = from_env({"RAG_AUTH_TOKEN": TOKEN, "RAG_RATE_LIMIT": "5"})
    assert s.auth_token == TOKEN and s.rate_limit == 5 and TOKEN not in repr(s)
    assert from_env({}).rate_limit == 60
    with pytest.raises(ConfigError):
        from_env({"RAG_RATE_LIMIT": "-1"})


def test_api_needs_the_bearer_token(locked):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}):
        r = locked.post("/api/ask", json=ASK, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
        assert "Authorization: Bearer" in r.json()["hint"]
    r = locked.post("/api/ask", json=ASK, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["citations"]


def test_health_tells_strangers_only_the_status(locked, demo):
    assert locked.get("/api/health").json() == {"status": "ok"}
    full = locked.get("/api/health", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert full == demo.health().to_dict() and len(full) > 1


def test_token_compare_is_constant_time_and_exact():
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN[:-1], TOKEN)
    assert not token_matches("", TOKEN) and not token_matches("\udcff", TOKEN)


def test_the_ui_asks_for_the_token(locked):
    assert locked.get("/config").status_code == 401
    upload = locked.post("/gradio_api/upload", files={"files": ("a.txt", b"x")})
    assert upload.status_code == 401
    bad = locked.post("/login", data={"username": "me", "password": "wrong"})
    assert bad.status_code == 400
    ok = locked.post("/login", data={"username": "me", "password": TOKEN})
    assert ok.status_code == 200
    config = locked.get("/config")
    assert config.status_code == 200 and "run-bench" in config.text and "upload-files" in config.text


def _bench_button(config: dict) -> tuple[bool, bool]:
    """(visible, has a handler) of the run-benchmark button."""
    buttons = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "run-bench"]
    ids = {c["id"] for c in buttons}
    triggered = {t[0] for d in config["dependencies"] for t in d.get("targets", [])}
    return any(b["props"].get("visible", True) for b in buttons), bool(ids & triggered)


def test_benchmark_and_upload_are_off_unless_enabled(demo):
    with TestClient(build_app(demo)) as c:
        config = c.get("/config").json()
    assert "upload-files" not in str(config)
    assert _bench_button(config) == (False, False)
    with TestClient(build_app(demo, allow_benchmark=True)) as c:
        assert _bench_button(c.get("/config").json()) == (True, True)


def test_rate_limit_answers_429_with_retry_after(demo):
    with TestClient(build_app(demo, rate_limit=3)) as c:
        codes = [c.post("/api/ask", json=ASK).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.post("/api/ask", json=ASK)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "3 requests per minute" in r.json()["error"]
        assert c.get("/api/health").status_code == 200  # health is not limited


def test_rate_limiter_refills_and_keeps_clients_apart():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.check("a") == 0 for _ in range(60))
    wait = limiter.check("a")
    assert 0.9 <= wait <= 1.0
    assert limiter.check("b") == 0  # another address has its own bucket
    now[0] += 1.0
    assert limiter.check("a") == 0 and limiter.check("a") > 0
    assert RateLimiter(0).check("a") == 0  # 0 = off
