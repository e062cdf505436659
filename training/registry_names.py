"""Names shared by training and serving for registered models: aliases, version tags, promotion metric.

A module of its own so that the service can read them without importing the training pipeline.
"""

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Model version tags set at registration.
DIGEST_TAG = "artifact_sha256"
FAMILY_TAG = "family"
OUTCOME_TAG = "outcome"
RUN_TAG = "training_run_id"
#: The metric ``lenrisk promote`` compares: the chosen candidate's mean cross-validated log loss.
PROMOTION_METRIC = "cv_log_loss"
