"""``python -m starter``: the same program as ``compute-ledger``."""

from starter.cli import main

if __name__ == "__main__":
    main()
