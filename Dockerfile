# Placeholder: the one image for gateway, operator and indexer is issue 6.
# Nothing here is claimed to work yet; `docker build` on this file is expected to fail.
