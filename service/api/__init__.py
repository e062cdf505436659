"""The HTTP service: the FastAPI app factory, its lifespan, the JSON API, and the plumbing every route shares
(dependencies, the error table, request guard, body limit, metrics). CDS Hooks (:mod:`service.cds`) and the
calculator page (:mod:`service.ui`) are mounted by the same app.
"""
