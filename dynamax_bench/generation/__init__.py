"""Generation: the tasks (prompts, stop strings, metrics), strategies of a decode spec, the `generate` rule."""
