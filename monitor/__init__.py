"""longcat-monitor: usage and quota monitoring for the LongCat API."""

__all__: list[str] = []
