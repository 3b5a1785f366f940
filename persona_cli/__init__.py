"""persona: terminal chat and agent app for persona-core personas."""
