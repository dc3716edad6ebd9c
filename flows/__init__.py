"""Prefect flows over the pipeline's stage functions. Prefect is the ``[flows]`` extra, not a core dependency."""
try:
    import prefect  # noqa: F401
except ModuleNotFoundError as exc:  # a core-only install (make demo): say how to get the flows
    raise ModuleNotFoundError(
        "flows/ needs Prefect: pip install 'ecg-grounding[flows]' (make test installs it)", name=exc.name) from exc
