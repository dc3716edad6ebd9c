"""Request keys, the durable store, prices and rate-limit header parsing (real SQLite files, no server)."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap

import pytest

from pipeline.llm import PriceTable, ResponseStore, StoredResponse, Usage, request_key, usage_from_body
from pipeline.llm.hashing import canonical_messages
from pipeline.llm.ratelimit import RateGate, parse_duration_s, retry_after_s


def _img_msg(data: bytes) -> list[dict]:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return [{"role": "user", "content": [{"type": "text", "text": "read this ECG"},
                                         {"type": "image_url", "image_url": {"url": url, "detail": "high"}}]}]


def test_request_key_depends_on_everything_that_changes_the_answer():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    base = request_key("openai", "gpt-4o-2024-08-06", {"max_tokens": 100}, msgs)
    assert base == request_key("openai", "gpt-4o-2024-08-06", {"max_tokens": 100}, [dict(m) for m in msgs])
    assert len({base,
                request_key("deepseek", "gpt-4o-2024-08-06", {"max_tokens": 100}, msgs),
                request_key("openai", "gpt-4o-mini", {"max_tokens": 100}, msgs),
                request_key("openai", "gpt-4o-2024-08-06", {"max_tokens": 101}, msgs),
                request_key("openai", "gpt-4o-2024-08-06", {"max_tokens": 100}, msgs[1:])}) == 5


def test_request_key_hashes_image_bytes_not_paths():
    a, b = _img_msg(b"\x89PNG one picture"), _img_msg(b"\x89PNG another picture")
    assert request_key("openai", "m", {}, a) != request_key("openai", "m", {}, b)
    assert request_key("openai", "m", {}, a) == request_key("openai", "m", {}, _img_msg(b"\x89PNG one picture"))
    canon = canonical_messages(a)
    assert canon[0]["content"][1]["image_url"]["url"].startswith("sha256:")
    assert "base64" not in json.dumps(canon)


def _resp(key: str, ok: bool, body: str | None = '{"choices": []}', code: str | None = None) -> StoredResponse:
    return StoredResponse(key, ok, 200 if ok else 500, body, {"x-request-id": "r1"}, 0.5, "openai", "m",
                          error_code=code)


def test_store_is_append_only_and_returns_the_first_paid_answer(tmp_path):
    with ResponseStore(tmp_path) as store:
        store.record_intent("k1", "rec", 1, "sync")
        store.put(_resp("k1", False, None, "server_error"))
        assert store.get_ok("k1") is None
        first = store.put(_resp("k1", True, '{"n": 1}'))
        store.put(_resp("k1", True, '{"n": 2}'))
        assert store.get_ok("k1").id == first and store.get_ok("k1").json() == {"n": 1}
        assert [r.ok for r in store.responses("k1")] == [False, True, True]
        store.record_intent("k2", "rec2", 1, "sync")
        assert store.lost_intents() == ["k2"]
        assert store.ok_keys() == {"k1"}
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_store_survives_sigkill_right_after_put(tmp_path):
    """A row is durable the moment put() returns: a process killed right after loses nothing."""
    script = textwrap.dedent(f"""
        import os, signal
        from pipeline.llm import ResponseStore, StoredResponse
        s = ResponseStore({str(tmp_path)!r})
        for i in range(50):
            s.put(StoredResponse(f"k{{i}}", True, 200, '{{"i": %d}}' % i, {{}}, 0.1, "openai", "m"))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9
    with ResponseStore(tmp_path) as store:
        assert store.ok_keys() == {f"k{i}" for i in range(50)}
        assert store.get_ok("k49").json() == {"i": 49}


def test_store_shared_by_two_processes(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from pipeline.llm import ResponseStore, StoredResponse
        s = ResponseStore({str(tmp_path)!r})
        for i in range(100):
            s.put(StoredResponse(f"{{sys.argv[1]}}{{i}}", True, 200, "{{}}", {{}}, 0.0, "openai", "m"))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, tag]) for tag in ("a", "b")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with ResponseStore(tmp_path) as store:
        assert len(store.ok_keys()) == 200


def test_processes_opening_a_new_store_at_the_same_moment_all_succeed(tmp_path):
    """Workers that open a fresh store at the same instant all get it: putting a new database file in WAL mode
    needs its exclusive lock, and SQLite answered the others "database is locked" at once, without waiting (a CI
    run lost test_store_shared_by_two_processes to it). Four processes open eight new stores together, each at one
    shared instant (without the wait, 3 of 4 processes died in each of three tries)."""
    import time

    t0 = time.time() + 3.0  # past the interpreter's start and imports, so the opens coincide
    script = textwrap.dedent(f"""
        import sys, time
        from pipeline.llm import ResponseStore, StoredResponse
        for k in range(8):
            while time.time() < {t0!r} + 0.4 * k:
                pass
            s = ResponseStore({str(tmp_path)!r} + f"/round{{k}}")
            for i in range(10):
                s.put(StoredResponse(f"{{sys.argv[1]}}{{i}}", True, 200, "{{}}", {{}}, 0.0, "openai", "m"))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(t)], stderr=subprocess.PIPE) for t in range(4)]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    for k in range(8):
        with ResponseStore(tmp_path / f"round{k}") as store:
            assert len(store.ok_keys()) == 40


def test_usage_and_cost_from_openai_and_deepseek_bodies():
    openai_body = {"usage": {"prompt_tokens": 6000, "completion_tokens": 500,
                             "prompt_tokens_details": {"cached_tokens": 2000},
                             "completion_tokens_details": {"reasoning_tokens": 0}}}
    u = usage_from_body(openai_body)
    assert u == Usage(6000, 500, 2000, 0)
    prices = PriceTable()
    # 4000 uncached x 2.50 + 2000 cached x 1.25 + 500 out x 10.00, per million
    assert prices.cost_usd("openai", "gpt-4o-2024-08-06", u) == pytest.approx(0.0175)
    assert prices.cost_usd("openai", "gpt-4o-2024-08-06", u, batch=True) == pytest.approx(0.00875)
    ds = usage_from_body({"usage": {"prompt_tokens": 1000, "completion_tokens": 3000, "prompt_cache_hit_tokens": 400,
                                    "completion_tokens_details": {"reasoning_tokens": 2500}}})
    assert ds == Usage(1000, 3000, 400, 2500)
    assert prices.cost_usd("deepseek", "deepseek-reasoner", ds) == pytest.approx((600 * .28 + 400 * .028 + 3000 * .42) / 1e6)
    assert prices.cost_usd("openai-compatible", "qwen", ds) == 0.0
    assert prices.cost_usd("openai", "unknown-model", ds) is None
    assert prices.worst_case_usd("openai", "gpt-4o-2024-08-06", 6000, 2048) == pytest.approx((6000 * 2.5 + 2048 * 10) / 1e6)


def test_price_table_override_from_yaml(tmp_path):
    f = tmp_path / "prices.yaml"
    f.write_text("openai:gpt-4o-2024-08-06: {input_per_m: 1.0, cached_input_per_m: 0.5, output_per_m: 4.0}\n"
                 "my-model: {input_per_m: 3.0, cached_input_per_m: 3.0, output_per_m: 3.0}\nbatch_discount: 0.25\n")
    t = PriceTable.load(f)
    assert t.cost_usd("openai", "gpt-4o-2024-08-06", Usage(1_000_000, 1_000_000)) == pytest.approx(5.0)
    assert t.cost_usd("openai", "my-model", Usage(1_000_000, 0), batch=True) == pytest.approx(0.75)
    assert t.cost_usd("deepseek", "deepseek-chat", Usage(1_000_000, 0)) == pytest.approx(0.28)


def test_rate_limit_header_parsing():
    assert parse_duration_s("1s") == 1.0
    assert parse_duration_s("6m0s") == 360.0
    assert parse_duration_s("20ms") == pytest.approx(0.02)
    assert parse_duration_s("1h2m3.5s") == pytest.approx(3723.5)
    assert parse_duration_s("soon") is None
    assert retry_after_s({"Retry-After": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "150", "retry-after": "9"}) == pytest.approx(0.15)
    gate = RateGate()
    gate.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "5s"})
    gate.observe({"x-ratelimit-remaining-tokens": "1200", "x-ratelimit-reset-tokens": "50s"})
    assert gate.pauses == 1


def test_rate_gate_waits_for_tokens_to_come_back():
    import asyncio
    import time

    gate = RateGate()
    gate.observe({"x-ratelimit-remaining-tokens": "5000", "x-ratelimit-reset-tokens": "300ms"})

    async def go():
        t0 = time.monotonic()
        await gate.wait(3000)          # fits: immediate, and books the tokens
        t1 = time.monotonic()
        await gate.wait(3000)          # 2000 left: waits for the window to reset
        return t1 - t0, time.monotonic() - t1

    first, second = asyncio.run(go())
    assert first < 0.05 and second >= 0.25


def test_error_classification():
    from pipeline.llm.providers import classify_status

    vllm = '{"object":"error","message":"This model\'s maximum context length is 4096 tokens. However, you requested 9000 tokens","type":"BadRequestError","code":400}'
    assert classify_status(400, vllm) == ("context_length_exceeded", False)
    assert classify_status(400, '{"error":{"code":"context_length_exceeded"}}') == ("context_length_exceeded", False)
    assert classify_status(429, '{"error":{"code":"insufficient_quota"}}') == ("insufficient_quota", False)
    assert classify_status(429, '{"error":{"code":"rate_limit_exceeded"}}') == ("rate_limited", True)
    assert classify_status(502, "<html>bad gateway</html>") == ("server_error", True)
    assert classify_status(401, None) == ("auth_error", False)
    assert classify_status(400, '{"error":{"message":"bad"}}') == ("bad_request", False)


def test_claims_between_two_senders(tmp_path):
    a, b = ResponseStore(tmp_path), ResponseStore(tmp_path)
    try:
        assert a.claim("k", "r", 1, "sync") is None            # a sends
        assert b.claim("k", "r", 1, "sync") == a.owner         # b must wait for a
        a.release("k")
        assert b.claim("k", "r", 1, "sync") is None            # a gave up: b may send
        assert a.claim("k", "r", 1, "sync") == b.owner
        b.put(StoredResponse("k", True, 200, "{}", {}, 0.1, "openai", "m"))
        assert a.claim("k", "r", 1, "sync") is None            # answered: nobody holds it
        # an intent left by a process that died holds nothing
        a._db.execute("INSERT INTO intents(request_key, mode, pid, created_at, owner) VALUES "
                      "('k2','sync',999999999,?, '999999999:dead')", (__import__("time").time(),))
        assert b.claim("k2", "r", 1, "sync") is None
    finally:
        a.close()
        b.close()
