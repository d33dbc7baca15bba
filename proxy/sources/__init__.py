"""Origin adapters, one module per source."""
