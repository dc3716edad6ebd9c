"""What an OpenAI-compatible server is, asked once before sending: which software, which model it really
serves, its context window, and whether it can count tokens with the served tokenizer.

| server | model id | context window | served tokenizer |
|---|---|---|---|
| vLLM (``owned_by: vllm``) | ``/v1/models`` | ``max_model_len`` there | ``POST /tokenize`` (chat template applied) |
| llama.cpp ``llama-server`` | ``/v1/models`` | ``GET /props`` ``n_ctx`` | ``POST /tokenize`` |
| llama-cpp-python | ``/v1/models`` (the alias, else the file path) | not reported: learned from its first context-length refusal | ``POST /extras/tokenize/count`` |
| Ollama | ``/v1/models`` | ``POST /api/show``: ``num_ctx``, else Ollama's default | none |

Every probe is a cheap GET/POST with a short timeout; a server that answers none of them is ``unknown`` and
is budgeted with a measured margin over our o200k count.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

OLLAMA_DEFAULT_NUM_CTX = 2048  # what Ollama serves when neither the Modelfile nor the request sets num_ctx
KINDS = ("openai", "deepseek", "vllm", "llama.cpp", "llama-cpp-python", "ollama", "unknown")


@dataclass
class ServerInfo:
    kind: str = "unknown"
    host: str = ""                    # host:port of the base URL (part of every request key)
    model_id: str | None = None       # the model the server says it serves under the requested name
    n_ctx: int | None = None          # served context window in tokens
    n_ctx_source: str | None = None   # max_model_len | props | api/show | refusal | --context-window | store
    tokenizer: str | None = None      # 'vllm' | 'llama.cpp' | 'llama-cpp-python' when the server can count
    notes: list[str] = field(default_factory=list)

    def identity(self) -> dict[str, str]:
        """What, beyond the requested model name, decides which model answers: goes into request keys."""
        return {"host": self.host, "served_model": self.model_id or ""}


def host_of(base_url: str | None) -> str:
    if not base_url:
        return ""
    parts = urlsplit(base_url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{(parts.hostname or '').lower()}:{port}"


def server_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


async def probe_server(base_url: str, model: str, api_key: str | None = None, timeout_s: float = 5.0) -> ServerInfo:
    """Ask an OpenAI-compatible server what it is (see the module table). Never raises for a silent server."""
    info = ServerInfo(host=host_of(base_url))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root = server_root(base_url)
    async with httpx.AsyncClient(timeout=timeout_s, headers=headers) as http:
        owned_by = ""
        try:
            r = await http.get(base_url.rstrip("/") + "/models")
            if r.status_code == 200:
                models = [m for m in (r.json().get("data") or []) if isinstance(m, dict)]
                match = [m for m in models if m.get("id") == model] or (models if len(models) == 1 else [])
                if match:
                    m = match[0]
                    info.model_id = str(m.get("id"))
                    owned_by = str(m.get("owned_by") or "")
                    if m.get("max_model_len"):
                        info.kind, info.n_ctx, info.n_ctx_source = "vllm", int(m["max_model_len"]), "max_model_len"
                        info.tokenizer = "vllm"
                elif models:
                    info.notes.append(f"the server lists {len(models)} models, none named {model!r}")
        except (httpx.HTTPError, ValueError):
            info.notes.append("GET /v1/models failed")
        if info.kind == "unknown" and owned_by == "vllm":
            info.kind, info.tokenizer = "vllm", "vllm"
        if info.kind == "unknown":
            try:  # llama.cpp's own server
                r = await http.get(root + "/props")
                if r.status_code == 200:
                    doc = r.json()
                    n_ctx = (doc.get("default_generation_settings") or {}).get("n_ctx") or doc.get("n_ctx")
                    info.kind, info.tokenizer = "llama.cpp", "llama.cpp"
                    if n_ctx:
                        info.n_ctx, info.n_ctx_source = int(n_ctx), "props"
                    if doc.get("model_path") and not info.model_id:
                        info.model_id = str(doc["model_path"])
            except (httpx.HTTPError, ValueError):
                pass
        if info.kind == "unknown":
            try:  # Ollama: num_ctx if configured, else its default (not the model's trained context_length)
                r = await http.post(root + "/api/show", json={"model": model})
                if r.status_code == 200:
                    doc = r.json()
                    info.kind = "ollama"
                    num_ctx = None
                    for line in str(doc.get("parameters") or "").splitlines():
                        parts = line.split()
                        if len(parts) == 2 and parts[0] == "num_ctx":
                            num_ctx = int(parts[1])
                    if num_ctx is None:
                        trained = [int(v) for k, v in (doc.get("model_info") or {}).items()
                                   if k.endswith(".context_length")]
                        num_ctx = min([OLLAMA_DEFAULT_NUM_CTX, *trained])
                    info.n_ctx, info.n_ctx_source = num_ctx, "api/show"
            except (httpx.HTTPError, ValueError):
                pass
        if info.kind == "unknown":
            try:  # llama-cpp-python: no window anywhere, but its own tokenizer behind /extras
                r = await http.post(root + "/extras/tokenize/count", json={"input": "ECG", "model": model})
                if r.status_code == 200 and isinstance(r.json().get("count"), int):
                    info.kind, info.tokenizer = "llama-cpp-python", "llama-cpp-python"
            except (httpx.HTTPError, ValueError):
                pass
    return info


async def served_token_count(base_url: str, info: ServerInfo, model: str, texts: list[str],
                             api_key: str | None = None, timeout_s: float = 30.0) -> list[int] | None:
    """Token counts of ``texts`` by the served model's own tokenizer; None when the server has none."""
    if info.tokenizer is None or not texts:
        return None
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root = server_root(base_url)
    out: list[int] = []
    async with httpx.AsyncClient(timeout=timeout_s, headers=headers) as http:
        try:
            for text in texts:
                if info.tokenizer == "llama-cpp-python":
                    r = await http.post(root + "/extras/tokenize/count", json={"input": text, "model": model})
                    r.raise_for_status()
                    out.append(int(r.json()["count"]))
                elif info.tokenizer == "llama.cpp":
                    r = await http.post(root + "/tokenize", json={"content": text})
                    r.raise_for_status()
                    out.append(len(r.json()["tokens"]))
                else:  # vLLM
                    r = await http.post(root + "/tokenize", json={"model": model, "prompt": text,
                                                                  "add_special_tokens": False})
                    r.raise_for_status()
                    out.append(int(r.json()["count"]))
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
    return out


_CTX_PATTERNS = (
    # OpenAI, vLLM, llama-cpp-python: "maximum context length is 8192 tokens. However, you requested 10360
    # tokens (8312 in the messages, 2048 in the completion)"
    (re.compile(r"maximum context length is (\d+) tokens"), re.compile(r"\((\d+) in the messages")),
    # llama.cpp: "request (9000 tokens) exceeds the available context size (8192 tokens)"
    (re.compile(r"exceeds the available context size \((\d+) tokens\)"), re.compile(r"\((\d+) tokens\) exceeds")),
    # llama-cpp-python's raw error when no formatter caught it
    (re.compile(r"exceed context window of (\d+)"), re.compile(r"Requested tokens \((\d+)\)")),
)


def parse_context_refusal(text: str | None) -> tuple[int | None, int | None]:
    """(served context window, served prompt tokens) read from a context-length refusal's body."""
    if not text:
        return None, None
    import json

    try:  # llama.cpp puts the numbers in the error object itself
        err = (json.loads(text) or {}).get("error") or {}
        if isinstance(err, dict) and err.get("n_ctx"):
            return int(err["n_ctx"]), int(err["n_prompt_tokens"]) if err.get("n_prompt_tokens") else None
    except (ValueError, AttributeError, TypeError):
        pass
    for ctx_pat, prompt_pat in _CTX_PATTERNS:
        m = ctx_pat.search(text)
        if m:
            p = prompt_pat.search(text)
            return int(m.group(1)), int(p.group(1)) if p else None
    return None, None


def response_format_for(kind: str, provider: str, schema: dict | None, level: int = 0) -> dict | None:
    """The ``response_format`` asking ``kind`` for JSON matching ``schema``; ``level`` counts fallbacks.

    Level 0 is what each server documents for schema-constrained output: OpenAI, vLLM, llama.cpp and Ollama
    take ``json_schema``; llama-cpp-python only ``{"type": "json_object", "schema": …}`` (it answers 500 to
    ``json_schema``); DeepSeek only ``json_object``. Level 1 is plain JSON mode; level 2 sends none (the
    system prompt still asks for the object, and the answer is parsed either way).
    """
    if provider == "deepseek":
        level = max(level, 1)
    if level >= 2:
        return None
    if level == 1 or schema is None:
        return {"type": "json_object"}
    if kind == "llama-cpp-python":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "ecg_interpretation", "schema": schema}}
