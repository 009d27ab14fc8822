"""Cross-Layer Attribution: layer capture, the fast and exact paths, the reference loop, search."""

from ingest.cla.attribute import CLAError, CLAMemoryError, DEFAULT_MAX_MEMORY, attribute, describe_paths
from ingest.cla.capture import capture_layers
from ingest.cla.reference import attribute_reference
from ingest.cla.search import Circuit, find_circuit

__all__ = [
    "DEFAULT_MAX_MEMORY", "CLAError", "CLAMemoryError", "Circuit", "attribute", "attribute_reference",
    "capture_layers", "describe_paths", "find_circuit",
]
