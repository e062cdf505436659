"""The clinician's risk calculator page served at ``/``."""
