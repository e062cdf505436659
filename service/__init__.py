"""lenrisk service."""
