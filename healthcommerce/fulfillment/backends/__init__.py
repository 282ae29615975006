"""Commerce backends: a base class, a registry from name to dotted path, one folder per backend (docs/style.md 4)."""
