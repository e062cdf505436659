"""The runtime risk model: what a registered model version is, and everything that scores with it.

``training`` fits and registers these objects; the service, batch scoring, Spark executors and the logged
MLflow model (:mod:`features.model.pyfunc`) load and call them. Nothing here fits, evaluates, plots or
generates data, so importing it pulls in no training code.
"""
