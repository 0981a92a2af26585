"""pallet-monitor: one per host, the parent of every container palletd starts.

It forks each container's init from runtime code imported once (``server``), holds the
containers' stdio, writes their logs (``logfile``), serves attach streams and writes
each exit record atomically. palletd speaks to it over a unix socket (``wire``). Its
parent, the keeper (``keeper``), outlives it and restarts it (``keeperlink``).
"""

import os


def warn(text: str, who: str = "pallet-monitor") -> None:
    """A line on the monitor's (or its keeper's) stderr, its log."""
    os.write(2, f"{who}: {text}\n".encode())
