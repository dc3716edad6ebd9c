"""A real HTTP server speaking enough of the OpenAI API for the LLM tests (and the benchmark).

Started on 127.0.0.1 on a free port, in a thread of the test process. Endpoints: ``POST /v1/chat/completions``,
``GET /v1/models``, ``POST /v1/files``, ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``GET /v1/batches``, plus ``GET /props`` (llama.cpp) and ``POST /api/show`` (Ollama) when configured.

Faults are scripted per test, consumed first-in first-out, either for every chat request (``script``) or
only for requests whose text holds a marker (``script_for``): ``ok``, ``429`` (Retry-After), ``429ms``
(retry-after-ms), ``quota`` (429 insufficient_quota), ``500``, ``503``, ``timeout`` (sleeps past the client
timeout), ``drop`` (closes the connection), ``truncated`` (short body), ``invalid_json``, ``empty``,
``context_length`` (400 context_length_exceeded), ``401`` (echoes the key like a careless server),
``limit_headers`` (200 with x-ratelimit-remaining-requests: 0), ``drip`` (a 200 whose body trickles at
``drip_bytes_per_s``), ``503ra`` (503 with Retry-After).

``kind`` makes it behave like one real server: ``vllm`` (``max_model_len``, ``POST /tokenize``),
``llama-cpp-python`` (``owned_by: me``, ``POST /extras/tokenize/count``, 500 for a ``json_schema``
response_format, and, with ``n_ctx``, its context refusal when the prompt's served tokens reach the window),
``llama.cpp`` (``/props``, ``POST /tokenize``). Its "served tokenizer" counts ``served_ratio`` x o200k tokens
plus ``framing_per_message`` per message, like a small model's own BPE. With ``single_slot`` it computes one
chat request at a time (a lock), like llama.cpp on one slot, and a request the client abandoned is still
computed to the end. Answers to requests with a JSON ``response_format`` are JSON objects.

Every request is logged with the client's ``X-Client-Request-Id``, a sha256 of its body, the prompt it
belongs to (sha256 of its system and first user message) and its attempt (1 + assistant turns), so tests
count exactly what was sent, by prompt and attempt.
"""
from __future__ import annotations

import email.parser
import hashlib
import json
import math
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER_MARK = "[[ANSWER:"   # a prompt holding "[[ANSWER:text]]" gets exactly "text" back


@dataclass
class LogEntry:
    method: str
    path: str
    client_request_id: str | None
    body_sha256: str
    status: int | None
    fault: str
    t: float
    authorization: str | None
    body: dict[str, Any] | None = None
    prompt_id: str | None = None
    attempt: int | None = None


def prompt_identity(body: dict[str, Any] | None) -> tuple[str | None, int | None]:
    """(prompt id, attempt) of a chat body: a hash of the first system/user texts as the prompt had them,
    and 1 + the feedback turns it carries (each starts "Your previous", folded into the user text or not)."""
    msgs = (body or {}).get("messages") or []
    if not msgs:
        return None, None

    def text_of(m: dict) -> str:
        c = m.get("content")
        return c if isinstance(c, str) else "".join(p.get("text", "") for p in c or [])

    first = [text_of(m).split("\n\nYour previous")[0] for m in msgs if m.get("role") in ("system", "user")][:2]
    pid = hashlib.sha256(json.dumps(first, sort_keys=True).encode()).hexdigest()[:16]
    feedback = sum(text_of(m).count("Your previous") for m in msgs if m.get("role") == "user")
    return pid, 1 + feedback


def deterministic_answer(body: dict[str, Any]) -> str:
    """A grounded-looking paragraph that depends only on the request (so reruns compare equal)."""
    text = json.dumps(body.get("messages"), sort_keys=True)
    if ANSWER_MARK in text:
        start = text.index(ANSWER_MARK) + len(ANSWER_MARK)
        return text[start:text.index("]]", start)]
    h = hashlib.sha256(text.encode()).hexdigest()
    hr = 55 + int(h[:2], 16) % 50
    qrs = 80 + int(h[2:4], 16) % 40
    return (f"Sinus rhythm at {hr} bpm. The QRS duration is {qrs} ms in lead II, PR interval 160 ms, "
            f"QTc 420 ms. No ST elevation above 0.1 mV in V1-V6. [ref {h[:8]}]")


@dataclass
class FakeOpenAI:
    latency_s: float = 0.0
    timeout_sleep_s: float = 3.0
    retry_after_s: float = 0.2
    served_model: str | None = None          # what the API says it used (default: the requested model)
    reasoning: bool = False                  # DeepSeek-style reasoning_content in answers
    cached_tokens: int = 0
    max_model_len: int | None = None         # vLLM: reported in GET /v1/models
    llamacpp_n_ctx: int | None = None        # llama.cpp: GET /props
    ollama: dict[str, Any] | None = None     # Ollama: POST /api/show body
    usage_tokens: tuple[int, int] | None = None  # (prompt, completion) to report instead of len/4 estimates
    batch_mode: str = "complete"             # complete | partial | expired | failed
    batch_polls_until_done: int = 1
    kind: str | None = None                  # None | vllm | llama-cpp-python | llama.cpp (see the module doc)
    n_ctx: int | None = None                 # llama-cpp-python: refuse prompts of n_ctx served tokens or more
    served_ratio: float = 1.18               # served tokens per o200k token (SmolLM2 measured 1.15-1.19)
    framing_per_message: int = 5
    single_slot: bool = False
    drip_bytes_per_s: float = 8.0
    attempt_answers: dict[str, list[str]] | None = None   # prompt id -> answer of attempt 1, 2, ... (last repeats)
    log: list[LogEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()  # re-entered: batch processing builds completions under the lock
        self._faults: deque[str] = deque()
        self._marker_faults: dict[str, deque[str]] = {}
        self._marker_answers: dict[str, deque[str]] = {}
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._slot = threading.Lock()
        self.computed = 0                    # chat requests computed to the end (single_slot mode)

    # --- control ---------------------------------------------------------------------------------------
    def script(self, *faults: str) -> None:
        with self._lock:
            self._faults.extend(faults)

    def script_for(self, marker: str, *faults: str) -> None:
        with self._lock:
            self._marker_faults.setdefault(marker, deque()).extend(faults)

    def answers_for(self, marker: str, *texts: str) -> None:
        """Requests whose text holds ``marker`` get these answers, one per request, in order."""
        with self._lock:
            self._marker_answers.setdefault(marker, deque()).extend(texts)

    def start(self) -> FakeOpenAI:
        server = self

        class Handler(_Handler):
            fake = server

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    # --- what the tests assert on ----------------------------------------------------------------------
    def chat_log(self) -> list[LogEntry]:
        with self._lock:
            return [e for e in self.log if e.path == "/v1/chat/completions"]

    def counts(self) -> Counter:
        """Chat requests received per client request id (our request key)."""
        return Counter(e.client_request_id for e in self.chat_log())

    def body_counts(self) -> Counter:
        return Counter(e.body_sha256 for e in self.chat_log())

    def attempt_counts(self) -> Counter:
        """Chat requests received per (prompt id, attempt)."""
        return Counter((e.prompt_id, e.attempt) for e in self.chat_log())

    # --- a served tokenizer ------------------------------------------------------------------------------
    def served_tokens(self, text: str) -> int:
        from pipeline.tokens import count_tokens

        return math.ceil(count_tokens(text) * self.served_ratio)

    def served_prompt_tokens(self, body: dict[str, Any]) -> int:
        msgs = body.get("messages") or []
        text = "".join(m["content"] if isinstance(m.get("content"), str) else
                       "".join(p.get("text", "") for p in m.get("content") or []) for m in msgs)
        return self.served_tokens(text) + self.framing_per_message * len(msgs)

    # --- internals -------------------------------------------------------------------------------------
    def _next_fault(self, text: str) -> str:
        with self._lock:
            for marker, q in self._marker_faults.items():
                if marker in text and q:
                    return q.popleft()
            return self._faults.popleft() if self._faults else "ok"

    def _record(self, entry: LogEntry) -> None:
        with self._lock:
            self.log.append(entry)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = deterministic_answer(body)
        scripted = False
        if self.attempt_answers:
            pid, attempt = prompt_identity(body)
            if pid in self.attempt_answers:
                seq = self.attempt_answers[pid]
                answer = seq[min(attempt, len(seq)) - 1]
                scripted = True
        text = json.dumps(body.get("messages"))
        with self._lock:
            for marker, q in self._marker_answers.items():
                if marker in text and q:
                    answer = q.popleft()
                    scripted = True
                    break
        # like the real APIs, an image costs a fixed number of tokens, not its base64 length
        images = text.count('"image_url"')
        text_only = json.dumps([m.get("content") if isinstance(m.get("content"), str) else
                                [p.get("text", "") for p in m.get("content") or []] for m in body.get("messages", [])])
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in ("json_object", "json_schema") and not scripted:  # a constrained server answers an object
            answer = json.dumps({"interpretation": answer, "diagnoses": [], "cited_leads": ["II"]})
        prompt_tokens = max(1, len(text_only) // 4) + 765 * images
        if self.kind is not None:
            prompt_tokens = self.served_prompt_tokens(body)
        completion_tokens = max(1, len(answer) // 4)
        if self.usage_tokens:
            prompt_tokens, completion_tokens = self.usage_tokens
        finish = "stop"
        if answer.endswith("[[length]]"):   # a scripted answer cut off at max_tokens
            answer, finish = answer[: -len("[[length]]")], "length"
        msg: dict[str, Any] = {"role": "assistant", "content": answer}
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "prompt_tokens_details": {"cached_tokens": min(self.cached_tokens, prompt_tokens)},
                                 "completion_tokens_details": {"reasoning_tokens": 0}}
        if self.reasoning:
            reasoning = "Let me check the intervals one by one. " * 5
            msg["reasoning_content"] = reasoning
            rt = len(reasoning) // 4
            usage["completion_tokens"] += rt
            usage["completion_tokens_details"]["reasoning_tokens"] = rt
            usage["prompt_cache_hit_tokens"] = usage.pop("prompt_tokens_details")["cached_tokens"]
            usage["prompt_cache_miss_tokens"] = prompt_tokens - usage["prompt_cache_hit_tokens"]
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {"id": "chatcmpl-" + hashlib.sha256(text.encode()).hexdigest()[:20], "object": "chat.completion",
                "created": int(time.time()), "model": self.served_model or body.get("model"),
                "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": usage}

    def _run_batch(self, batch: dict[str, Any]) -> None:
        lines = [json.loads(x) for x in self._files[batch["input_file_id"]].decode().splitlines() if x.strip()]
        out, err = [], []
        if self.batch_mode == "expired":
            lines = lines[: len(lines) // 2]
        elif self.batch_mode == "failed":
            lines = []  # e.g. the input file failed validation: no output, no error file
        for n, line in enumerate(lines):
            rid = f"batch_req_{n}"
            if self.batch_mode == "partial" and n % 3 == 2:
                err.append({"id": rid, "custom_id": line["custom_id"], "response": {
                    "status_code": 500, "request_id": rid,
                    "body": {"error": {"message": "internal error", "type": "server_error"}}}, "error": None})
                continue
            out.append({"id": rid, "custom_id": line["custom_id"], "response": {
                "status_code": 200, "request_id": rid, "body": self.completion(line["body"])}, "error": None})
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = f"file-{name[:3]}-{batch['id']}"
                self._files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[name] = fid
        batch["status"] = {"expired": "expired", "failed": "failed"}.get(self.batch_mode, "completed")
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog: the default 5 resets bursts of 64 new connections

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # a client that gave up (timeout, SIGKILL): expected in these tests
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the tests read fake.log instead
        pass

    def _send(self, status: int, obj: Any = None, raw: bytes | None = None, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        data = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _log(self, body: bytes, status: int | None, fault: str = "", parsed: Any = None) -> None:
        pid, attempt = prompt_identity(parsed) if self.path == "/v1/chat/completions" else (None, None)
        self.fake._record(LogEntry(self.command, self.path, self.headers.get("X-Client-Request-Id"),
                                   hashlib.sha256(body).hexdigest(), status, fault, time.time(),
                                   self.headers.get("Authorization"), parsed, pid, attempt))

    def do_GET(self) -> None:  # noqa: N802
        f = self.fake
        self._log(b"", 200)
        if self.path == "/v1/models":
            owner = {"vllm": "vllm", "llama-cpp-python": "me", "llama.cpp": "llamacpp"}.get(f.kind or "", "fake")
            model = {"id": f.served_model or "fake-model", "object": "model", "owned_by": owner}
            if f.max_model_len:
                model["max_model_len"] = f.max_model_len
            self._send(200, {"object": "list", "data": [model]})
        elif self.path == "/props" and (f.llamacpp_n_ctx or f.kind == "llama.cpp"):
            self._send(200, {"default_generation_settings": {"n_ctx": f.llamacpp_n_ctx or f.n_ctx},
                             "model_path": f"/models/{f.served_model or 'fake-model'}.gguf"})
        elif self.path.startswith("/v1/files/") and self.path.endswith("/content"):
            fid = self.path.split("/")[3]
            if fid not in f._files:
                return self._send(404, {"error": {"message": "no such file", "code": "not_found"}})
            self._send(200, raw=f._files[fid], content_type="application/octet-stream")
        elif self.path.split("?")[0] == "/v1/batches":
            with f._lock:
                data = [{k: v for k, v in b.items() if not k.startswith("_")} for b in reversed(f._batches.values())]
            self._send(200, {"object": "list", "data": data, "has_more": False,
                             "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})
        elif self.path.startswith("/v1/batches/"):
            bid = self.path.split("/")[3]
            with f._lock:
                batch = f._batches.get(bid)
                if batch is None:
                    return self._send(404, {"error": {"message": "no such batch", "code": "not_found"}})
                batch["_polls"] += 1
                if batch["status"] in ("validating", "in_progress"):
                    if batch["_polls"] >= f.batch_polls_until_done:
                        f._run_batch(batch)
                    else:
                        batch["status"] = "in_progress"
                self._send(200, {k: v for k, v in batch.items() if not k.startswith("_")})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "code": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802
        f = self.fake
        raw = self._body()
        if self.path == "/api/show" and f.ollama is not None:
            self._log(raw, 200)
            return self._send(200, f.ollama)
        if self.path == "/extras/tokenize/count" and f.kind == "llama-cpp-python":
            self._log(raw, 200)
            return self._send(200, {"count": f.served_tokens(json.loads(raw)["input"])})
        if self.path == "/tokenize" and f.kind in ("vllm", "llama.cpp"):
            req = json.loads(raw)
            self._log(raw, 200)
            if f.kind == "vllm":
                n = f.served_tokens(req.get("prompt") or "")
                return self._send(200, {"count": n, "max_model_len": f.max_model_len, "tokens": list(range(n))})
            return self._send(200, {"tokens": list(range(f.served_tokens(req.get("content") or "")))})
        if self.path == "/v1/files":
            msg = email.parser.BytesParser().parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
            data, purpose = b"", None
            for part in msg.walk():
                name = part.get_param("name", header="content-disposition")
                if name == "file":
                    data = part.get_payload(decode=True)
                elif name == "purpose":
                    purpose = part.get_payload(decode=True).decode()
            fid = f"file-{hashlib.sha256(data).hexdigest()[:16]}-{len(f._files)}"
            with f._lock:
                f._files[fid] = data
            self._log(raw, 200, parsed={"purpose": purpose, "lines": data.count(b"\n")})
            return self._send(200, {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                    "filename": "requests.jsonl", "purpose": purpose, "status": "processed"})
        if self.path == "/v1/batches":
            req = json.loads(raw)
            with f._lock:
                bid = f"batch_{len(f._batches):04d}"
                f._batches[bid] = {"id": bid, "object": "batch", "endpoint": req["endpoint"],
                                   "input_file_id": req["input_file_id"], "completion_window": req["completion_window"],
                                   "status": "validating", "created_at": int(time.time()), "output_file_id": None,
                                   "error_file_id": None, "metadata": req.get("metadata"), "_polls": 0,
                                   "request_counts": {"total": 0, "completed": 0, "failed": 0}}
            self._log(raw, 200, parsed=req)
            return self._send(200, {k: v for k, v in f._batches[bid].items() if not k.startswith("_")})
        if self.path != "/v1/chat/completions":
            self._log(raw, 404)
            return self._send(404, {"error": {"message": f"no route {self.path}", "code": "not_found"}})
        body = json.loads(raw)
        fault = f._next_fault(raw.decode(errors="replace"))
        if f.kind == "llama-cpp-python":
            fmt = body.get("response_format") or {}
            if fmt and fmt.get("type") not in ("text", "json_object"):
                # what llama-cpp-python answers to OpenAI's json_schema (pydantic validation inside the app)
                self._log(raw, 500, "format", body)
                return self._send(500, {"error": {"message": "1 validation error for ChatCompletionRequest"
                                                  "ResponseFormat\ntype\n  Input should be 'text' or "
                                                  "'json_object'", "type": "internal_server_error"}})
            if f.n_ctx and fault == "ok":
                n_prompt = f.served_prompt_tokens(body)
                if n_prompt >= f.n_ctx:
                    self._log(raw, 400, "context_window", body)
                    mt = body.get("max_tokens") or 0
                    return self._send(400, {"error": {
                        "message": f"This model's maximum context length is {f.n_ctx} tokens. However, you "
                                   f"requested {n_prompt + mt} tokens ({n_prompt} in the messages, {mt} in the "
                                   "completion). Please reduce the length of the messages or completion.",
                        "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        status = {"drop": None, "truncated": None, "timeout": None, "429": 429, "429ms": 429, "quota": 429,
                  "500": 500, "503": 503, "503ra": 503, "context_length": 400, "401": 401}.get(fault, 200)
        self._log(raw, status, fault, body)
        if f.single_slot:
            with f._slot:  # one at a time; an abandoned request is still computed to the end
                if f.latency_s:
                    time.sleep(f.latency_s)
                f.computed += 1
            return self._chat(body, fault)
        if f.latency_s:
            time.sleep(f.latency_s)
        self._chat(body, fault)

    def _chat(self, body: dict[str, Any], fault: str) -> None:
        f = self.fake
        if fault == "ok":
            return self._send(200, f.completion(body))
        if fault == "limit_headers":
            return self._send(200, f.completion(body), headers={
                "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": f"{int(f.retry_after_s * 1000)}ms"})
        if fault == "429":
            return self._send(429, {"error": {"message": "Rate limit reached", "type": "requests",
                                              "code": "rate_limit_exceeded"}},
                              headers={"Retry-After": str(f.retry_after_s)})
        if fault == "429ms":
            return self._send(429, {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}},
                              headers={"retry-after-ms": str(int(f.retry_after_s * 1000))})
        if fault == "quota":
            return self._send(429, {"error": {"message": "You exceeded your current quota",
                                              "type": "insufficient_quota", "code": "insufficient_quota"}})
        if fault in ("500", "503"):
            return self._send(int(fault), {"error": {"message": "The server had an error", "type": "server_error"}})
        if fault == "503ra":
            return self._send(503, {"error": {"message": "Server busy", "type": "server_error"}},
                              headers={"Retry-After": str(f.retry_after_s)})
        if fault == "drip":
            data = json.dumps(f.completion(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for i in range(0, len(data), 8):
                    self.wfile.write(data[i:i + 8])
                    self.wfile.flush()
                    time.sleep(8 / f.drip_bytes_per_s)
            except OSError:
                pass  # the client gave up: what the test wants
            return None
        if fault == "context_length":
            return self._send(400, {"error": {"message": "This model's maximum context length is 128000 tokens.",
                                              "type": "invalid_request_error", "param": "messages",
                                              "code": "context_length_exceeded"}})
        if fault == "401":
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            return self._send(401, {"error": {"message": f"Incorrect API key provided: {key}.",
                                              "type": "invalid_request_error", "code": "invalid_api_key"}})
        if fault == "invalid_json":
            return self._send(200, raw=b'{"id": "chatcmpl-x", "choices": [ oops')
        if fault == "empty":
            resp = f.completion(body)
            resp["choices"][0]["message"]["content"] = ""
            return self._send(200, resp)
        if fault == "timeout":
            time.sleep(f.timeout_sleep_s)
            try:
                self._send(200, f.completion(body))
            except OSError:
                pass
            return None
        if fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return None
        if fault == "truncated":
            data = json.dumps(f.completion(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        raise ValueError(f"unknown fault {fault!r}")


if __name__ == "__main__":  # `python tests/fake_openai_server.py` serves until Ctrl-C (manual tries)
    import sys

    srv = FakeOpenAI(latency_s=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0).start()
    print(srv.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
