"""Regional news feed aggregator: polls feeds into SQLite, republishes merged topic feeds."""

__version__ = "0.1.0"
