"""lm-evaluation-harness adapter: the `dynamax` model, its CLI and the task files of the embedded sets."""
