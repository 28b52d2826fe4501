"""The LiteLLM proxy's record of every call: a logging callback appending one JSON line a call.

LiteLLM's own spend log needs its Prisma database layer, whose engine binaries are downloaded at
run time; without them this callback is how the proxy records each call, with its tokens, as the
project's gateway does. Loaded from the proxy's config (``litellm_settings.callbacks``); the file
is ``$PEERS_LITELLM_LOG``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from litellm.integrations.custom_logger import CustomLogger


class FileRecorder(CustomLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._file = open(os.environ["PEERS_LITELLM_LOG"], "a", buffering=1)  # noqa: SIM115

    def _write(self, kwargs: dict[str, Any], ok: bool) -> None:
        log = kwargs.get("standard_logging_object") or {}
        row = {
            "ok": ok,
            "model": log.get("model"),
            "stream": log.get("stream"),
            "input_tokens": log.get("prompt_tokens"),
            "output_tokens": log.get("completion_tokens"),
            "total_tokens": log.get("total_tokens"),
            "latency_s": log.get("response_time"),
        }
        self._file.write(json.dumps(row) + "\n")

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._write(kwargs, True)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._write(kwargs, False)


recorder = FileRecorder()
