"""Client side of the compute ledger: the Python client, the compute-ledger CLI, the demo."""
