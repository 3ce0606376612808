"""The language server: the pygls app, its JSON-RPC edges, one module per LSP feature, and the
models it serves per workspace folder. Built on ``codehone.core``."""
