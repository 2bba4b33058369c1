"""Optional parts of the install, and the one-line error that names the missing one.

``pip install proctor`` is what goes inside an agent. The server, the PostgreSQL driver,
the OpenTelemetry SDK and exporter, and notifications are extras.
"""

from __future__ import annotations

from ._errors import ConfigError

EXTRAS = {
    "server": "the server and console (proctor serve)",
    "postgres": "PostgreSQL",
    "otel": "exporting traces (the OpenTelemetry SDK and OTLP exporter)",
    "notify": "sending notifications",
    "openai-agents": "the OpenAI Agents SDK integration",
    "langgraph": "the LangGraph / LangChain integration",
    "mcp": "the MCP gateway and @gated (the official MCP SDK)",
    "crewai": "the CrewAI integration",
    "pydantic-ai": "the PydanticAI integration",
    "drift": "drift monitors (proctor drift, the server's drift checks)",
}


def missing(extra: str, exc: ImportError) -> ConfigError:
    """The error for a feature whose extra is not installed."""
    what = EXTRAS[extra]
    module = exc.name or "a package it needs"
    return ConfigError(
        f"{what} needs the '{extra}' extra ({module} is not installed):"
        f" pip install 'proctor[{extra}]'"
    )


MODULES = {
    "server": ("fastapi", "uvicorn", "jinja2", "itsdangerous", "multipart", "prometheus_client"),
    "postgres": ("psycopg",),
    "otel": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
    "notify": ("apprise",),
    "openai-agents": ("agents",),
    "langgraph": ("langgraph", "langchain"),
    "mcp": ("mcp",),
    "crewai": ("crewai",),
    "pydantic-ai": ("pydantic_ai",),
    "drift": ("numpy",),
}


def require(extra: str) -> None:
    """Fail with the one-line error now if ``extra`` is not installed (without importing)."""
    import importlib.util

    for module in MODULES[extra]:
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # its parent package is missing
            found = None
        if found is None:
            raise missing(extra, ModuleNotFoundError(name=module))
