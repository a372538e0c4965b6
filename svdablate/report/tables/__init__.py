"""Tables from runs: the papers' layouts, rows, statistics, the published numbers, notes."""
