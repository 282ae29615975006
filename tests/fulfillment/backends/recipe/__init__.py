"""The extending.md recipe, followed to the letter: a tiny backend in a temporary folder plus one settings entry."""
