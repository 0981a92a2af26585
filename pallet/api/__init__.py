"""palletd's HTTP layer: the Docker Engine API over a unix socket.

Routes and thin handlers; ``errors`` is the one place that maps pallet's exceptions to
HTTP status codes, with Docker's JSON error body.
"""
