"""Images: references, digests, manifests (pure); the content store; transports."""
