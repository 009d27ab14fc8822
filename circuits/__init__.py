"""Root of the `circuits` command line; the library lives in `catalog`, `ingest` and `queries`."""

__all__: list[str] = []
