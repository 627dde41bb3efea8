"""Writers for deployable formats, each run in a subprocess so a converter crash is an error, not a dead CLI."""
