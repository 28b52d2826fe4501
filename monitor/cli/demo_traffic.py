"""The demo's keys and traffic: two weeks of made-up history, then real SDK calls.

The history is written straight to ``api_calls`` (``source = "demo-history"``, with stable event
ids, so running the demo again adds nothing twice). Today's calls go through
:func:`monitor.instrument` and the real ``openai`` and ``anthropic`` SDKs against the local
simulator: chat completions, the Responses API and messages, streams, injected faults the SDKs
retry, labels, one key with a small quota that runs out and is then refused (402), and a coding
tool (Claude Code's User-Agent and session) calling through the gateway.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Final

from monitor.capture.fingerprint import key_hint, key_id
from monitor.ledger.quota_day import day_start, quota_day
from monitor.records import CallRecord

HISTORY_SOURCE: Final = "demo-history"
HISTORY_DAYS: Final = 13
OPENAI_ENDPOINT: Final = "/openai/v1/chat/completions"
RESPONSES_ENDPOINT: Final = "/openai/v1/responses"
ANTHROPIC_ENDPOINT: Final = "/anthropic/v1/messages"
#: Today's models; history older than ``MODELS_CHANGED`` keeps the names its keys used then.
CURRENT_MODELS: Final = ("LongCat-2.0", "LongCat-2.5-Preview")
MODELS_CHANGED: Final = timedelta(days=7)
#: The tools the history's calls came from (``api_calls.client``).
HISTORY_CLIENTS: Final = {"openai": "openai-python 3.63.0", "anthropic": "anthropic-python 2.17.0"}
#: What the demo's coding tool sends through the gateway, as Claude Code does.
TOOL_USER_AGENT: Final = "claude-cli/2.1.328 (external, sdk-cli)"
#: Makes the SDKs retry injected faults at once instead of after their default back-off.
FAST_RETRY: Final = {"x-simulate-retry-after-ms": "5"}


@dataclass(frozen=True, slots=True)
class DemoKey:
    """A made-up API key the demo uses (the simulator accepts any key)."""

    name: str | None
    raw: str
    quota: int | None
    recipients: tuple[str, ...] = ()
    models: tuple[str, ...] = ("LongCat-Flash-Chat",)
    calls_per_hour: float = 2.0
    tokens_per_call: int = 1500
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def key_id(self) -> str:
        return key_id(self.raw)

    @property
    def hint(self) -> str:
        return key_hint(self.raw)


DEMO_KEYS: Final = (
    DemoKey(
        "search",
        "demo-key-search-0001-S3RC",
        5_000_000,
        ("search-team@example.com",),
        ("LongCat-2.0", "LongCat-Flash-Thinking"),
        calls_per_hour=6,
        tokens_per_call=2400,
        labels={"feature": ("search", "rerank"), "user": ("alice", "bob", "chen")},
    ),
    DemoKey(
        "support-bot",
        "demo-key-support-0002-SUPT",
        500_000,
        ("support-leads@example.com",),
        ("LongCat-2.0", "LongCat-Flash-Lite"),
        calls_per_hour=4,
        tokens_per_call=1800,
        labels={"feature": ("support",), "user": ("dana", "eli")},
    ),
    DemoKey(
        "nightly-reports",
        "demo-key-reports-0003-RPT5",
        40_000,
        (),
        ("LongCat-Flash-Thinking",),
        calls_per_hour=0.3,
        tokens_per_call=3000,
        labels={"feature": ("reports",)},
    ),
    # Never registered, and revoked: the simulator answers 401 to any key containing "revoked".
    DemoKey(None, "demo-key-revoked-0004-OLD9", None, calls_per_hour=0),
)

#: The pool the search and support keys share (its quota is crossed most afternoons, so the
#: demo has paid calls), what the team topped up and the token pack it bought.
DEMO_POOL: Final = ("product", 200_000, ("search", "support-bot"))
DEMO_TOP_UP: Final = "1"
DEMO_PACK_TOKENS: Final = 150_000

#: A long prompt (about 4,000 tokens) for the reports key, which burns through its small quota.
REPORT_PROMPT: Final = "Summarise these sales figures by region and quarter. " + (
    "Region north, quarter three, revenue rose while costs held steady. " * 240
)


# --- history --------------------------------------------------------------------------------


def _event_id(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def _busy(local_hour: int) -> float:
    """Office-hours traffic shape: quiet at night, peaks late morning and afternoon."""
    return (
        0.15
        + math.exp(-(((local_hour - 11) / 3.0) ** 2))
        + math.exp(-(((local_hour - 16) / 2.5) ** 2))
    )


def history(now: datetime, tz: tzinfo, seed: int = 7, days: int = HISTORY_DAYS) -> list[CallRecord]:
    """Made-up calls for the past ``days`` quota days and today until an hour ago."""
    rng = random.Random(seed)
    today = quota_day(now, tz)
    start = day_start(today - timedelta(days=days), tz)
    end = now - timedelta(hours=1)
    records: list[CallRecord] = []
    hour = start
    while hour < end:
        local = hour.astimezone(tz)
        weekend = 0.4 if local.weekday() >= 5 else 1.0
        for key in DEMO_KEYS:
            if key.calls_per_hour <= 0:
                continue
            expected = key.calls_per_hour * _busy(local.hour) * weekend
            if key.name == "nightly-reports":
                expected = 3.0 if local.hour == 2 else 0.0
            count = int(expected) + (1 if rng.random() < expected - int(expected) else 0)
            for i in range(count):
                started = hour + timedelta(seconds=rng.uniform(0, 3599))
                if started >= end:
                    continue
                current = started >= now - MODELS_CHANGED
                records.append(_history_call(rng, key, started, i, current))
        hour += timedelta(hours=1)
    return records


def _history_call(
    rng: random.Random, key: DemoKey, started: datetime, i: int, current: bool = False
) -> CallRecord:
    model = rng.choice(CURRENT_MODELS if current else key.models)
    stream = rng.random() < 0.5
    api = "anthropic" if key.name == "search" and rng.random() < 0.5 else "openai"
    total = max(int(rng.gauss(key.tokens_per_call, key.tokens_per_call / 4)), 50)
    output = total // 4
    thinking = "Thinking" in model or (current and i % 2 == 0)
    endpoint = ANTHROPIC_ENDPOINT if api == "anthropic" else OPENAI_ENDPOINT
    if current and api == "openai" and i % 3 == 0:
        endpoint = RESPONSES_ENDPOINT
    latency = rng.lognormvariate(math.log(1800 if thinking else 700), 0.45)
    labels = {name: rng.choice(values) for name, values in key.labels.items()}
    roll = rng.random()
    error: tuple[str, int, str] | None = None
    if roll < 0.02:
        error = ("rate_limit", 429, "Rate limit reached for requests; retry after 60 s.")
    elif roll < 0.03:
        error = ("server_error", 500, "The server had an error while processing your request.")
    elif roll < 0.035:
        error = ("context_length_exceeded", 400, "This model's maximum context length is 131072.")
    elif key.name == "nightly-reports" and roll < 0.1:
        error = ("quota_exhausted", 402, "Insufficient token quota or balance.")
    common: dict[str, Any] = {
        "started_at": started,
        "api": api,
        "endpoint": endpoint,
        "key_id": key.key_id,
        "key_hint": key.hint,
        "model": model,
        "stream": stream,
        "labels": labels,
        "source": HISTORY_SOURCE,
        "client": HISTORY_CLIENTS[api],
        "request_id": f"req_{_event_id(key.raw, started, i)[:20]}",
        "event_id": _event_id(HISTORY_SOURCE, key.raw, started.isoformat(), i),
    }
    if error is not None:
        error_type, status, message = error
        return CallRecord(
            **common,
            status_code=status,
            error_type=error_type,
            error_message=message,
            latency_ms=rng.uniform(40, 200),
        )
    return CallRecord(
        **common,
        status_code=200,
        latency_ms=latency,
        ttft_ms=latency * rng.uniform(0.15, 0.35) if stream else None,
        input_tokens=total - output,
        output_tokens=output,
        total_tokens=total,
        cache_read_tokens=(total - output) // 3 if current else None,
        reasoning_tokens=output // 2 if thinking else None,
        usage_source="reported",
    )


# --- today's calls through the real SDKs ---------------------------------------------------

Call = Callable[[], object]


def _ignore_api_errors(call: Call) -> Call:
    def run() -> object:
        import anthropic
        import openai

        try:
            return call()
        except (openai.APIError, anthropic.APIError):
            return None  # an injected fault the SDK gave up on: recorded all the same

    return run


class SdkTraffic:
    """Instrumented ``openai`` and ``anthropic`` clients, one per demo key, and what they call."""

    def __init__(
        self, openai_base_url: str, anthropic_base_url: str, gateway_url: str | None = None
    ) -> None:
        import anthropic
        import openai

        import monitor

        search, support, reports, revoked = DEMO_KEYS
        self._clients: list[Any] = []

        def oa(key: DemoKey, retries: int = 2) -> openai.OpenAI:
            client = openai.OpenAI(base_url=openai_base_url, api_key=key.raw, max_retries=retries)
            self._clients.append(client)
            return monitor.instrument(client)

        self.search = monitor.instrument(
            anthropic.Anthropic(base_url=anthropic_base_url, api_key=search.raw, max_retries=2)
        )
        self._clients.append(self.search)
        self.support = oa(support)
        self.reports = oa(reports)
        self.revoked = oa(revoked, retries=0)
        self.tool: Any = None
        if gateway_url is not None:  # a coding tool, which cannot be wrapped, calls the gateway
            import httpx2

            self.tool = httpx2.Client(base_url=gateway_url, timeout=60)
            self._clients.append(self.tool)

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def search_call(self, i: int, stream: bool, fault: str | None = None) -> Call:
        import monitor

        headers = {**FAST_RETRY, "x-simulate-delay-ms": str(150 + 40 * (i % 5))}
        if fault:
            headers |= {"x-simulate-fault": fault, "x-simulate-fault-times": "1"}
        model = CURRENT_MODELS[i % 2]
        ask: Any = [{"role": "user", "content": f"Find passages about refunds, query {i}."}]

        def run() -> object:
            with monitor.tags(feature="search", user=("alice", "bob", "chen")[i % 3]):
                if stream:
                    with self.search.messages.stream(
                        model=model, max_tokens=256, messages=ask, extra_headers=headers
                    ) as events:
                        return events.get_final_message()
                return self.search.messages.create(
                    model=model, max_tokens=256, messages=ask, extra_headers=headers
                )

        return _ignore_api_errors(run)

    def support_call(self, i: int, fault: str | None = None, times: int = 1) -> Call:
        import monitor

        headers = {**FAST_RETRY, "x-simulate-delay-ms": str(80 + 30 * (i % 4))}
        if fault:
            headers |= {"x-simulate-fault": fault, "x-simulate-fault-times": str(times)}
        question = f"Customer {i} asks how to reset a password. Draft a short, friendly reply."

        def run() -> object:
            with monitor.tags(feature="support", user=("dana", "eli")[i % 2]):
                stream = self.support.chat.completions.create(
                    model=CURRENT_MODELS[i % 2],
                    messages=[{"role": "user", "content": question}],
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers=headers,
                    extra_body={"thinking": {"type": "enabled" if i % 2 else "disabled"}},
                )
                return list(stream)

        return _ignore_api_errors(run)

    def responses_call(self, i: int, stream: bool, fault: str | None = None) -> Call:
        """The support bot's agent, on the Responses API, thinking, with cached context."""
        import monitor

        headers = {"x-simulate-delay-ms": "60", "x-simulate-cached-tokens": str(40 + 8 * i)}
        if fault:
            headers["x-simulate-fault"] = fault
        ask = f"Ticket {i}: classify it and suggest the next step."

        def run() -> object:
            with monitor.tags(feature="triage", user=("dana", "eli")[i % 2]):
                options: dict[str, Any] = {
                    "model": CURRENT_MODELS[i % 2],
                    "instructions": "You triage support tickets. " * 20,
                    "input": ask,
                    "reasoning": {"effort": "low"},
                    "extra_headers": headers,
                }
                if not stream:
                    return self.support.responses.create(**options)
                with self.support.responses.stream(**options) as events:
                    return [event.type for event in events]  # a failed one has no final response

        return _ignore_api_errors(run)

    def report_call(self, i: int, fault: str | None = None) -> Call:
        import monitor

        headers = {"x-simulate-delay-ms": "400"}
        if fault:
            headers["x-simulate-fault"] = fault

        def run() -> object:
            with monitor.tags(feature="reports"):
                return self.reports.responses.create(
                    model="LongCat-2.0",
                    input=f"Report {i}. {REPORT_PROMPT}",
                    reasoning={"effort": "high"},
                    extra_headers=headers,
                )

        return _ignore_api_errors(run)

    def tool_call(self, i: int) -> Call:
        """A Claude Code session's call through the gateway (Anthropic style, streamed)."""

        def run() -> object:
            if self.tool is None:
                return None
            headers = {
                "authorization": f"Bearer {DEMO_KEYS[0].raw}",
                "user-agent": TOOL_USER_AGENT,
                "x-claude-code-session-id": f"demo-session-{i // 4:04d}",
            }
            body = {
                "model": CURRENT_MODELS[0],
                "max_tokens": 512,
                "stream": True,
                "thinking": {"type": "enabled"},
                "messages": [{"role": "user", "content": f"Fix failing test number {i}."}],
            }
            with self.tool.stream(
                "POST", "/anthropic/v1/messages", json=body, headers=headers
            ) as answer:
                return answer.read()

        return run

    def revoked_call(self) -> Call:
        def run() -> object:
            return self.revoked.chat.completions.create(
                model="LongCat-2.0", messages=[{"role": "user", "content": "ping"}]
            )

        return _ignore_api_errors(run)

    def seed_plan(self) -> list[tuple[str, Call]]:
        """Today's calls: ``(description, call)``, about 45 of them."""
        plan: list[tuple[str, Call]] = []
        for i in range(10):
            plan.append(("search: anthropic messages", self.search_call(i, stream=i % 2 == 0)))
        plan.append(("search: 529 overloaded, retried", self.search_call(10, True, "overloaded")))
        for i in range(10):
            plan.append(("support-bot: openai streams", self.support_call(i)))
        plan += [
            ("support-bot: 429, retried", self.support_call(20, "rate_limit")),
            ("support-bot: 500, retried", self.support_call(21, "server_error")),
            ("support-bot: 500 on every try", self.support_call(22, "server_error", 9)),
            ("support-bot: context too long", self.support_call(23, "context_length")),
            ("support-bot: stream cut", self.support_call(24, "cut_stream")),
        ]
        for i in range(6):
            plan.append(("support-bot: Responses API", self.responses_call(i, stream=i % 2 == 0)))
        plan += [
            ("support-bot: response.failed", self.responses_call(6, True, "response_failed")),
            ("support-bot: 503", self.responses_call(7, False, "service_unavailable")),
        ]
        for i in range(12):
            plan.append(("nightly-reports: long prompts", self.report_call(i)))
        for i in range(3):
            plan.append(("nightly-reports: 402", self.report_call(12 + i, "quota_exhausted")))
        for i in range(8):
            plan.append(("claude-code through the gateway", self.tool_call(i)))
        for _ in range(6):
            plan.append(("revoked key: 401", self.revoked_call()))
        return plan

    def trickle(self, round_: int) -> list[Call]:
        """A few ordinary calls for the live phase, so the dashboard keeps moving."""
        i = 100 + round_ * 3
        return [
            self.search_call(i, stream=True),
            self.support_call(i + 1),
            self.search_call(i + 2, False),
            self.responses_call(i, stream=True),
            self.tool_call(i),
        ]
