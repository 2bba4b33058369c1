"""Telemetry: OpenTelemetry traces (GenAI conventions) and Prometheus metrics."""
