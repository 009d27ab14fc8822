"""The typographic-attack defence: attack metrics, the text-circuit sweep and recommendation, the
per-layer k search, and the zero-shot CLIP harness."""
