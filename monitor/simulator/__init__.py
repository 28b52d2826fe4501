"""A local LongCat-compatible API server with injectable failures, for tests, benchmarks and demos.

Start it from a test with :class:`RunningSimulator`; choose failures per request with the
``x-simulate-*`` headers listed in :mod:`monitor.simulator.faults`.
"""

from monitor.simulator.app import SimulatorOptions, create_app
from monitor.simulator.faults import Compression, Fault
from monitor.simulator.server import RunningSimulator, serve_forever

__all__ = [
    "Compression",
    "Fault",
    "RunningSimulator",
    "SimulatorOptions",
    "create_app",
    "serve_forever",
]
