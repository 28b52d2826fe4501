"""What runs on the caller's thread: the monitored transport, the per-call observer and the pure
parsers of bodies, server-sent events and compressed bytes. Nothing here touches a database."""
