"""``python -m bench peers``: this project beside the tools a team would pick instead, one run.

1. In-process wrappers (:mod:`bench.peers.wrappers`): CPU added per openai SDK call by
   ``monitor.instrument()``, ``opentelemetry-instrumentation-openai-v2`` and ``langfuse.openai``.
2. Gateways (:mod:`bench.peers.gateways`): latency added and throughput of ``monitor.gateway`` and
   the LiteLLM proxy at several concurrencies.
3. The gateways under load: 64 streams of a token every 50 ms for 5 s.

Peers come from the ``bench`` extra only (``pip install -e '.[bench]'``); a part whose peer is
missing runs without it and says why. The report is printed and written to
``bench/results/peers-<date>T<HHMM>.md``.

    python -m bench peers [-- --parts wrappers,gateways,load --calls 200 --rounds 5 --scale 1]
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    # imported here, so that ``python -m bench.peers.<worker>`` does not import it first
    from bench.peers.run import main as run

    run(argv)
