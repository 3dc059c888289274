"""The kopf operator that turns pending indexing_jobs rows into Kubernetes Jobs: run.py is
the reconcile loop, launcher.py starts and watches the Jobs, manifests.py writes them.

Imported as codebase_operator: a package named `operator` would shadow the standard library.
"""
