"""Network definitions built by the model zoo (`ingest.zoo`).

- `catfish_mini`: the bundled InceptionV1-style network trained on CatFish-synth.
- `inceptionv1`: InceptionV1 in Lucid's layout (layers `mixed3a … mixed5b`, Lucid's widths).
- `clip_rn50`: CLIP's RN50 image tower with open_clip's parameter names.

Import the submodules directly; nothing is imported here, so the package stays light.
"""

from __future__ import annotations

__all__: list[str] = []
