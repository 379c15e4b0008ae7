"""Pure rendering: (spec, target, config) -> desired objects and patches. No I/O."""
