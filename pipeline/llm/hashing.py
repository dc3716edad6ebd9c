"""Request keys: sha256 over what determines an answer (provider, model, parameters, messages).

Images travel as base64 data URLs; the key hashes the decoded image *bytes*, never a file path, so the same
picture rendered into another folder reuses the stored answer and a changed picture does not.
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

KEY_VERSION = "rk1"  # bump if the canonical form changes: old keys then simply miss, nothing is overwritten


def _image_digest(url: str) -> str:
    """sha256 of an image URL's bytes when it is a data URL, else of the URL text itself."""
    if url.startswith("data:") and ";base64," in url:
        payload = url.split(";base64,", 1)[1]
        return "sha256:" + hashlib.sha256(base64.b64decode(payload)).hexdigest()
    return "url-sha256:" + hashlib.sha256(url.encode()).hexdigest()


def canonical_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with every image replaced by the digest of its bytes (what is hashed and what is stored)."""
    out: list[dict[str, Any]] = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image_url":
                    img = dict(part["image_url"])
                    img["url"] = _image_digest(img["url"])
                    parts.append({"type": "image_url", "image_url": img})
                else:
                    parts.append(part)
            msg = {**msg, "content": parts}
        out.append(msg)
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(provider: str, model: str, params: dict[str, Any], messages: list[dict[str, Any]],
                server: dict[str, str] | None = None) -> str:
    """Hex sha256 identifying one chat request; identical requests share a key (and a stored answer).

    ``server`` (``ServerInfo.identity()``: host:port and the model id the server reports) is given for
    ``openai-compatible`` backends, where one ``--llm`` name can mean another server or another model file:
    their answers must not be reused for each other. Paid APIs keep their keys (the host is fixed and the
    model name is the snapshot), so stores made before this remain valid.
    """
    doc = {"v": KEY_VERSION, "provider": provider, "model": model, "params": params,
           "messages": canonical_messages(messages)}
    if server:
        doc["server"] = server
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()


def chain_id(provider: str, model: str, params: dict[str, Any], messages: list[dict[str, Any]],
             server: dict[str, str] | None = None, variant: str | None = None) -> str:
    """Identity of one prompt's attempts: the first attempt's request as the user configured it (before any
    re-budgeting or format fallback). Plans of later attempts are stored under it."""
    doc = {"v": "chain1", "provider": provider, "model": model, "params": params, "variant": variant,
           "messages": canonical_messages(messages), "server": server or {}}
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()
