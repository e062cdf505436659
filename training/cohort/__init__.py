"""Synthetic cohort generator calibrated on the published studies in shared/seeds."""
