"""lenrisk training."""
