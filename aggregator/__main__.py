"""`python -m aggregator` is the same program as the `aggregator` console script."""

from aggregator.cli import main

if __name__ == "__main__":
    main()
