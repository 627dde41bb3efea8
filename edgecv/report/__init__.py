"""report.json (the contract between compress, eval, bench, profile and gate) and its renderings."""
