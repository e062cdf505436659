"""lenrisk features."""
