"""LLM backends behind one interface: the offline rules writer and OpenAI-compatible chat APIs.

``--llm`` specs: ``rules`` | ``openai:MODEL`` | ``deepseek:MODEL`` | ``openai-compatible:MODEL`` (with
``--base-url``: vLLM, Ollama, llama.cpp, SGLang). Keys come only from the environment (OPENAI_API_KEY,
DEEPSEEK_API_KEY, ECG_LLM_API_KEY) or a Prefect Secret block; they are never logged nor stored, and any
echo of the key in an error body is redacted before it reaches the store.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipeline.llm.servers import OLLAMA_DEFAULT_NUM_CTX  # noqa: F401  (its old home)
from pipeline.llm.servers import ServerInfo, host_of, parse_context_refusal, probe_server, response_format_for
from pipeline.llm.store import StoredResponse
from pipeline.record import ConfigError

PROVIDERS = ("rules", "openai", "deepseek", "openai-compatible")
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "deepseek": "https://api.deepseek.com"}
KEY_ENV = {"openai": "OPENAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY", "openai-compatible": "ECG_LLM_API_KEY"}
# Headers worth keeping beside a body: request ids, processing time, rate-limit state.
KEEP_HEADERS = ("x-request-id", "openai-processing-ms", "openai-version", "date", "retry-after",
                "retry-after-ms", "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
SDK_KWARGS = {"max_tokens", "max_completion_tokens", "temperature", "top_p", "response_format", "seed", "stop"}


class LLMConfigError(ConfigError):
    """A bad ``--llm`` spec, a missing key, an unusable option combination."""


@dataclass(frozen=True)
class BackendSpec:
    provider: str
    model: str
    base_url: str | None = None

    @classmethod
    def parse(cls, spec: str, base_url: str | None = None) -> BackendSpec:
        """``rules`` | ``openai:gpt-4o-2024-08-06`` | ``deepseek:deepseek-reasoner`` | ``openai-compatible:M``."""
        if spec == "rules":
            return cls("rules", "rules", None)
        provider, sep, model = spec.partition(":")
        if not sep or not model or provider not in PROVIDERS:
            raise LLMConfigError(f"bad --llm {spec!r}: use rules | openai:MODEL | deepseek:MODEL | "
                                 "openai-compatible:MODEL")
        if provider == "openai-compatible" and not base_url:
            raise LLMConfigError("--llm openai-compatible:MODEL needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return cls(provider, model, base_url or DEFAULT_BASE_URLS.get(provider))


@dataclass
class SendResult:
    """What one HTTP attempt produced. ``stored`` is what goes into the store (already redacted)."""

    stored: StoredResponse
    retryable: bool = False
    retry_after_s: float | None = None


def _filter_headers(headers: Any) -> dict[str, str]:
    return {k: headers[k] for k in KEEP_HEADERS if headers is not None and k in headers}


def parse_answer(body: dict[str, Any] | None) -> tuple[str | None, str | None, str | None]:
    """(content, reasoning_content, finish_reason) of a chat completion body."""
    try:
        choice = body["choices"][0]
        msg = choice.get("message") or {}
        return msg.get("content"), msg.get("reasoning_content"), choice.get("finish_reason")
    except (KeyError, IndexError, TypeError):
        return None, None, None


def judge_body(text: str) -> tuple[bool, str | None, str | None]:
    """(ok, error_code, message) for a 200 body: must be JSON with a non-empty answer."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        return False, "invalid_json", f"response body is not JSON ({exc.msg} at char {exc.pos})"
    content, _, finish = parse_answer(body)
    if content is None or not str(content).strip():
        return False, "empty_content", f"the answer is empty (finish_reason={finish})"
    return True, None, None


class Backend:
    """Interface: build the parameters for a request, send one attempt, report the served context window."""

    provider: str
    model: str
    supports_batch = False
    supports_images = True
    local = False                      # a self-hosted server: paced from 1 in flight, timeouts sized to it
    server: ServerInfo | None = None   # filled by prepare() for servers worth asking

    def params(self, variant: str | None, max_tokens: int, temperature: float | None,
               json_schema: dict | None, seed: int | None, format_level: int = 0) -> dict[str, Any]:
        raise NotImplementedError

    async def prepare(self) -> ServerInfo | None:
        """Ask the server what it is (once per run, before sending)."""
        return None

    def identity(self) -> dict[str, str] | None:
        """Server identity for request keys (None: the provider and model name say it all)."""
        return None

    async def send(self, key: str, messages: list[dict], params: dict, context: Any = None,
                   timeout_s: float | None = None) -> SendResult:
        raise NotImplementedError

    async def context_window(self) -> int | None:
        return None

    async def aclose(self) -> None:
        return None


class RulesBackend(Backend):
    """The offline writer behind the same path as an LLM: same store, cost 0, model ``rules/<VERSION>``."""

    provider = "rules"
    supports_images = False

    def __init__(self, writer: Callable[[Any, int], str] | None = None, version: str | None = None):
        if writer is None:
            from pipeline import writer as writer_mod  # the offline writer (another stage's module)
            writer = writer_mod.write_answer
            version = version or getattr(writer_mod, "WRITER_VERSION", "unversioned")
        self.writer = writer
        self.model = f"rules/{version or 'unversioned'}"

    def params(self, variant, max_tokens, temperature, json_schema, seed, format_level=0) -> dict[str, Any]:
        return {"seed": int(seed or 0)}

    async def send(self, key, messages, params, context=None, timeout_s=None) -> SendResult:
        t0 = time.perf_counter()
        if context is None:
            return SendResult(StoredResponse(key, False, None, None, {}, 0.0, self.provider, self.model,
                                             error_code="no_context",
                                             error_message="the rules writer needs the record's GroundingContext"))
        text = self.writer(context, params.get("seed", 0))
        body = {"id": f"rules-{key[:16]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model, "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
        ok, code, msg = judge_body(json.dumps(body))
        return SendResult(StoredResponse(key, ok, 200, json.dumps(body), {}, time.perf_counter() - t0,
                                         self.provider, self.model, error_code=code, error_message=msg))


def resolve_api_key(provider: str, secret_block: str | None = None) -> str | None:
    """The key from the environment (or a Prefect Secret block); None for keyless local servers."""
    if secret_block:
        from prefect.blocks.system import Secret  # only when asked: importing prefect is slow
        return Secret.load(secret_block).get()
    return os.environ.get(KEY_ENV[provider])


@dataclass
class OpenAIBackend(Backend):
    """OpenAI, DeepSeek and OpenAI-compatible servers through the official SDK (AsyncOpenAI, no SDK retries)."""

    spec: BackendSpec
    api_key: str | None = None
    timeout_s: float | None = None          # None: sized per request by the pacer
    context_window_override: int | None = None
    extra_body: dict[str, Any] | None = None  # server-specific sampling options (top_k, grammar, ...)
    _client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from openai import AsyncOpenAI

        self.provider, self.model = self.spec.provider, self.spec.model
        if self.api_key is None and self.provider in ("openai", "deepseek"):
            raise LLMConfigError(f"{KEY_ENV[self.provider]} is not set (keys are read from the environment only)")
        self.supports_batch = self.provider == "openai"
        self.reasoner = self.provider == "deepseek" and "reasoner" in self.model
        self.local = self.provider == "openai-compatible"
        kind = self.provider if self.provider in ("openai", "deepseek") else "unknown"
        self.server = ServerInfo(kind=kind, host=host_of(self.spec.base_url))
        if self.context_window_override:
            self.server.n_ctx, self.server.n_ctx_source = int(self.context_window_override), "--context-window"
        # max_retries=0: our retry loop is the only retry layer, so attempts never multiply. httpx's timeout
        # is per read; the whole request is bounded in send() (a server dripping bytes resets a read timeout).
        per_read = self.timeout_s or 900.0
        self._client = AsyncOpenAI(api_key=self.api_key or "no-key", base_url=self.spec.base_url, max_retries=0,
                                   timeout=httpx.Timeout(per_read, connect=min(10.0, per_read)))

    @property
    def client(self):
        return self._client

    def redact(self, text: str | None) -> str | None:
        if text and self.api_key and len(self.api_key) >= 4:
            return text.replace(self.api_key, "***")
        return text

    async def prepare(self) -> ServerInfo | None:
        if self.provider != "openai-compatible":
            return self.server
        found = await probe_server(self.spec.base_url, self.model, self.api_key)
        if self.server.n_ctx_source == "--context-window":  # the user's word wins over the server's
            found.n_ctx, found.n_ctx_source = self.server.n_ctx, self.server.n_ctx_source
        self.server = found
        return found

    def identity(self) -> dict[str, str] | None:
        return self.server.identity() if self.provider == "openai-compatible" else None

    def params(self, variant, max_tokens, temperature, json_schema, seed, format_level=0) -> dict[str, Any]:
        p: dict[str, Any] = {"max_tokens": int(max_tokens)}
        if temperature is not None and not self.reasoner:
            p["temperature"] = float(temperature)  # deepseek-reasoner ignores sampling parameters: don't send
        if variant == "json":
            fmt = response_format_for(self.server.kind, self.provider, json_schema, format_level)
            if fmt is not None:
                p["response_format"] = fmt
        if seed is not None and self.provider in ("openai", "openai-compatible"):
            p["seed"] = int(seed)
        for k, v in (self.extra_body or {}).items():
            p.setdefault(k, v)
        return p

    def _sdk_kwargs(self, params: dict) -> dict[str, Any]:
        kw = {k: v for k, v in params.items() if k in SDK_KWARGS}
        extra = {k: v for k, v in params.items() if k not in SDK_KWARGS}
        if extra:
            kw["extra_body"] = extra
        return kw

    def _stored(self, key, ok, status, body, headers, t0, code=None, msg=None) -> StoredResponse:
        return StoredResponse(key, ok, status, self.redact(body), _filter_headers(headers),
                              time.perf_counter() - t0, self.provider, self.model,
                              error_code=code, error_message=self.redact(msg))

    async def send(self, key, messages, params, context=None, timeout_s=None) -> SendResult:
        import openai

        from pipeline.llm.ratelimit import retry_after_s

        t0 = time.perf_counter()
        limit = timeout_s if timeout_s is not None else self.timeout_s
        try:
            async with asyncio.timeout(limit):
                raw = await self._client.chat.completions.with_raw_response.create(
                    model=self.model, messages=messages, extra_headers={"X-Client-Request-Id": key[:64]},
                    **self._sdk_kwargs(params))
                text = raw.text
        except openai.APIStatusError as exc:
            resp = exc.response
            text = resp.text if resp is not None else None
            code, retryable = classify_status(exc.status_code, text)
            ra = retry_after_s(resp.headers) if resp is not None else None
            return SendResult(self._stored(key, False, exc.status_code, text, resp.headers if resp else None, t0,
                                           code, f"HTTP {exc.status_code}: {exc.message}"), retryable, ra)
        except (openai.APITimeoutError, TimeoutError) as exc:
            msg = f"no complete answer within {limit:.0f} s" if limit else str(exc)
            return SendResult(self._stored(key, False, None, None, None, t0, "timeout", msg), True)
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            return SendResult(self._stored(key, False, None, None, None, t0, "connection_error",
                                           f"{type(cause).__name__}: {cause}"), True)
        ok, code, msg = judge_body(text)
        # A 200 that is not JSON or holds no answer is a transient server fault: retry (bounded).
        return SendResult(self._stored(key, ok, raw.status_code, text, raw.headers, t0, code, msg), not ok)

    async def context_window(self) -> int | None:
        """The context window the server serves: ``--context-window``, else what ``prepare`` found (vLLM
        ``max_model_len``, llama.cpp ``/props``, Ollama ``/api/show``), else what a refusal taught."""
        return self.server.n_ctx if self.server else None

    async def aclose(self) -> None:
        await self._client.close()


# A refusal of the requested structured-output format (not of the request as such): never retried as is.
_FORMAT_REFUSAL = re.compile(
    r"response_format|json_schema|json_object|guided_(?:json|decoding)|structured output|"
    r"Input should be 'text' or 'json_object'", re.I)


def classify_status(status: int, text: str | None) -> tuple[str, bool]:
    """(error_code, retryable) for an HTTP error: retry 408/409/429/5xx only, never 400/401/403/404."""
    err_code = ""
    try:
        err = (json.loads(text or "") or {}).get("error") or {}
        err_code = str(err.get("code") or err.get("type") or "")
    except (json.JSONDecodeError, AttributeError):
        pass
    low = (text or "").lower()
    # OpenAI sends the code; DeepSeek and vLLM only say it in the message ("maximum context length is ...")
    if "context_length_exceeded" in err_code or "context_length_exceeded" in low or \
            (status == 400 and "maximum context length" in low):
        return "context_length_exceeded", False
    if status in (400, 422, 500, 501) and _FORMAT_REFUSAL.search(text or ""):
        return "format_unsupported", False
    if status == 429:
        if err_code == "insufficient_quota":
            return "insufficient_quota", False  # retrying cannot help: the account is out of credit
        return "rate_limited", True
    if status >= 500:
        return "server_error", True
    if status in (408, 409):
        return "timeout" if status == 408 else "conflict", True
    return {400: "bad_request", 401: "auth_error", 403: "permission_denied", 404: "not_found",
            413: "request_too_large", 422: "unprocessable"}.get(status, f"http_{status}"), False


async def detect_context_window(base_url: str, model: str, api_key: str | None = None,
                                timeout_s: float = 5.0) -> int | None:
    """How many tokens of context a vLLM / llama.cpp / Ollama server actually serves for ``model``."""
    return (await probe_server(base_url, model, api_key, timeout_s)).n_ctx


def context_refusal(stored: StoredResponse) -> tuple[int | None, int | None]:
    """(served window, served prompt tokens) from a stored context-length refusal."""
    return parse_context_refusal(stored.body or stored.error_message)


def make_backend(spec: BackendSpec, api_key: str | None = None, timeout_s: float | None = None,
                 writer: Callable | None = None, context_window: int | None = None,
                 extra_body: dict[str, Any] | None = None) -> Backend:
    """A backend for ``spec``; the key defaults to the provider's environment variable. ``timeout_s`` bounds
    each whole request (None: sized per request from the server's measured speed)."""
    if spec.provider == "rules":
        return RulesBackend(writer)
    key = api_key if api_key is not None else resolve_api_key(spec.provider)
    return OpenAIBackend(spec, key, timeout_s, context_window, extra_body)
