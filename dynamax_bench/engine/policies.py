"""State policies: what the caches of the layers a token skipped receive, per backbone family.

Defined once here (torch-free, so profile checks can read it without loading a model); each
layer stack implements the policies of its family.
"""

POLICIES: dict[str, tuple[str, ...]] = {
    "transformer": ("copy", "partial"),  # K/V copied from the last executed layer, or projected from the exited state
    "mamba2": ("skip", "partial"),  # conv/SSM states left as they were, or advanced by the mixer step
}
