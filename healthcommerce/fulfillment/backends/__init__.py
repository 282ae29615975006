"""Commerce backends: a base class, a registry from name to dotted path, one folder per backend (STYLE.md 4)."""
