"""The kopf operator that turns pending indexing_jobs rows into Kubernetes Jobs. Not built yet.

Imported as codebase_operator: a package named `operator` would shadow the standard library.
"""
