"""Alerts: rules (pure) · forecast (pure) · messages (pure) · delivery (SMTP).

The ledger of what was decided and sent lives in :mod:`monitor.store.alerts`; one pass of every
job, which ties these together, is :func:`monitor.ledger.jobs.run_tick`.
"""
