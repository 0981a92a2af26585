"""The Engine API client over the unix socket: stdlib only, import-light.

The CLI's hot verbs start a process per command; this package imports `socket`,
`json` and nothing heavier, and speaks HTTP/1.1 itself (http.client costs more to
import than it saves here).
"""
