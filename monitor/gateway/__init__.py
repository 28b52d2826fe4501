"""The monitoring gateway: a local reverse proxy that records every call of tools that cannot
import the wrapper (Claude Code, editors, curl, other languages) through the same transport.

>>> with RunningGateway(load_settings(upstream_url=sim.base_url)) as gw:  # doctest: +SKIP
...     anthropic.Anthropic(base_url=gw.anthropic_base_url, api_key="…").messages.create(...)
"""

from monitor.config import is_loopback
from monitor.gateway.app import create_gateway_app
from monitor.gateway.guard import QuotaGuard
from monitor.gateway.server import RunningGateway, serve_forever

__all__ = ["QuotaGuard", "RunningGateway", "create_gateway_app", "is_loopback", "serve_forever"]
