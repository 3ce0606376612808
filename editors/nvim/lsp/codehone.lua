-- codehone language server, for nvim-lspconfig users and for `vim.lsp.enable('codehone')`
-- without calling require('codehone').setup(). Override any field with vim.lsp.config:
--
--   vim.lsp.config('codehone', {
--     cmd = { 'codehone', 'serve', '--model', vim.fs.normalize('~/models/my-project') },
--     init_options = { maxNewTokens = 48 },
--   })
--   vim.lsp.enable('codehone')
--
-- A project's .codehone.toml chooses the model only when you trust the workspace:
--   init_options = { trustedWorkspace = true }  (and allowModelsOutsideWorkspace = true for a
-- model outside the project folder); without it every file gets the global model.
--
-- Ghost text on Neovim 0.12: vim.lsp.inline_completion.enable(), plus a key that calls
-- vim.lsp.inline_completion.get() (require('codehone').setup() does both).

---@type vim.lsp.Config
return {
  cmd = { 'codehone', 'serve' },
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'Cargo.toml', 'go.mod', '.hg' },
  init_options = vim.empty_dict(),
  -- One server for every buffer: it holds one model whatever the project.
  reuse_client = function(client, config)
    return client.name == config.name and not client:is_stopped()
  end,
}
