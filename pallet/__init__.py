"""pallet: a container engine — Docker's Engine API and CLI, an OCI runtime, images on overlayfs."""

__version__ = "0.1.0"
