"""The indexing pipeline run by an indexer Job pod or a local subprocess: pipeline.py is the flow."""
