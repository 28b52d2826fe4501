"""OpenTelemetry export of every call (opt-in): the GenAI conventions' shape of a record (pure),
the SDK pipeline that sends spans and metrics over OTLP/HTTP, and the sink that feeds it from the
recorder's writer thread."""
