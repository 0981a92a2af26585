"""Networking: IPAM and firewall rules (pure); bridges, veths, netns and DNS (apply)."""
