"""Recipe schema, stage runner and run directory."""
