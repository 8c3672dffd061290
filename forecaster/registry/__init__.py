"""MLflow IO and the served artifact: tracking (runs, the pyfunc), the one registry loader, the
registry's tag names, and the bundle, the single source of truth for what a served model
expects (no Lightning is imported by it).
"""
