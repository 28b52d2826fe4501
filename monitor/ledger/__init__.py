"""The quota ledger: the pure arithmetic of totals, the quota day, the rollup job, retention, the
scheduled jobs that run them and the metrics they expose."""
