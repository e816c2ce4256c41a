"""outcall: the shared layer of the outbound-calling hub.

Handlers import from here; nothing here imports a handler.
"""
