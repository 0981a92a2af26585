"""The OCI runtime: a runtime-spec config becomes an isolated process.

``container`` drives the verbs, ``init`` is what runs inside the new namespaces until
the user's process is exec'd, ``rootfs`` and ``process`` hold the two halves of that
set-up, and ``cli`` is runc's command line over all of it.
"""
