"""What the one LSP client (``codehone.check.client``) tells the server it can do, unless told
otherwise: what VS Code declares, so the server is driven headless exactly as in an editor."""

from __future__ import annotations

from typing import Any

from lsprotocol import types

# What VS Code (1.9x, vscode-languageclient 9) declares, trimmed to what matters to a
# completion server: UTF-16 positions, incremental sync, snippet-capable completion items,
# inline completion (LSP 3.18), workspace folders and configuration.
EDITOR_CAPABILITIES: dict[str, Any] = {
    "general": {
        "positionEncodings": ["utf-16"],
        "staleRequestSupport": {
            "cancel": True,
            "retryOnContentModified": [
                "textDocument/semanticTokens/full",
                "textDocument/semanticTokens/range",
                "textDocument/semanticTokens/full/delta",
            ],
        },
        "regularExpressions": {"engine": "ECMAScript", "version": "ES2020"},
        "markdown": {"parser": "marked", "version": "1.1.0"},
    },
    "window": {
        "workDoneProgress": True,
        "showMessage": {"messageActionItem": {"additionalPropertiesSupport": True}},
        "showDocument": {"support": True},
    },
    "workspace": {
        "applyEdit": True,
        "workspaceEdit": {"documentChanges": True},
        "didChangeConfiguration": {"dynamicRegistration": True},
        "executeCommand": {"dynamicRegistration": True},
        "workspaceFolders": True,
        "configuration": True,
        "didChangeWatchedFiles": {"dynamicRegistration": True, "relativePatternSupport": True},
    },
    "textDocument": {
        "synchronization": {
            "dynamicRegistration": True,
            "willSave": True,
            "willSaveWaitUntil": True,
            "didSave": True,
        },
        "completion": {
            "dynamicRegistration": True,
            "contextSupport": True,
            "completionItem": {
                "snippetSupport": True,
                "commitCharactersSupport": True,
                "documentationFormat": ["markdown", "plaintext"],
                "deprecatedSupport": True,
                "preselectSupport": True,
                "tagSupport": {"valueSet": [1]},
                "insertReplaceSupport": True,
                "resolveSupport": {
                    "properties": ["documentation", "detail", "additionalTextEdits"]
                },
                "insertTextModeSupport": {"valueSet": [1, 2]},
                "labelDetailsSupport": True,
            },
            "insertTextMode": 2,
            "completionItemKind": {"valueSet": list(range(1, 26))},
            "completionList": {
                "itemDefaults": [
                    "commitCharacters",
                    "editRange",
                    "insertTextFormat",
                    "insertTextMode",
                    "data",
                ]
            },
        },
        "inlineCompletion": {"dynamicRegistration": True},
    },
}


def editor_capabilities() -> types.ClientCapabilities:
    from lsprotocol.converters import get_converter

    return get_converter().structure(EDITOR_CAPABILITIES, types.ClientCapabilities)
