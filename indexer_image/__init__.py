"""The indexing pipeline run by an indexer Job pod or a local subprocess. Not built yet: see issue 3."""
