"""``codehone check``: the real server driven headless as an editor would, for a project's CI.

Cases, the run, the report (text and JUnit), the LSP client every headless driver uses, and
the pytest plugin. Built on ``codehone.core``; talks to ``codehone.lsp`` only over the wire.
"""
