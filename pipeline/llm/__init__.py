"""The LLM generation layer: backends, request keys, the durable response store, retries, batch mode, cost.

Public entry points: ``BackendSpec.parse``, ``make_backend``, ``ResponseStore``, ``request_key``,
``PriceTable``, ``complete`` (one durable request), ``run_batches`` (OpenAI Batch API).
"""
from pipeline.llm.batch_api import BatchRequest, run_batches
from pipeline.llm.client import Completion, RetryPolicy, complete
from pipeline.llm.hashing import request_key
from pipeline.llm.pricing import PriceTable, Usage, usage_from_body
from pipeline.llm.providers import (Backend, BackendSpec, LLMConfigError, OpenAIBackend, RulesBackend,
                                    detect_context_window, make_backend, parse_answer)
from pipeline.llm.pacing import Pacer
from pipeline.llm.ratelimit import RateGate
from pipeline.llm.servers import ServerInfo, probe_server
from pipeline.llm.store import ResponseStore, StoredResponse

__all__ = ["Backend", "BackendSpec", "BatchRequest", "Completion", "LLMConfigError", "OpenAIBackend", "Pacer",
           "PriceTable", "RateGate", "ResponseStore", "RetryPolicy", "RulesBackend", "ServerInfo", "StoredResponse",
           "Usage", "complete", "detect_context_window", "make_backend", "parse_answer", "probe_server",
           "request_key", "run_batches", "usage_from_body"]
