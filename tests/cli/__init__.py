"""The longcat-monitor command (a package, so cli.test_keys and store's test_keys can coexist)."""
