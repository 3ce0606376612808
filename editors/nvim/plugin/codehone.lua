-- User commands. Nothing starts until require('codehone').setup() (or vim.lsp.enable('codehone')).
if vim.g.loaded_codehone then
  return
end
vim.g.loaded_codehone = true

vim.api.nvim_create_user_command('CodehoneStatus', function()
  local codehone = require('codehone')
  local status, err = codehone.status()
  if not status then
    vim.notify('codehone: ' .. err, vim.log.levels.WARN)
    return
  end
  vim.notify('codehone: ' .. codehone.format_status(status) .. '\n' .. vim.inspect(status))
end, { desc = 'Show what the codehone server has loaded and how fast it is' })

vim.api.nvim_create_user_command('CodehoneToggle', function()
  require('codehone').toggle()
end, { desc = 'Turn codehone completions on or off' })

vim.api.nvim_create_user_command('CodehoneRestart', function()
  require('codehone').restart()
end, { desc = 'Restart the codehone server' })

vim.api.nvim_create_user_command('CodehoneLog', function()
  local opts = require('codehone').options or {}
  local file = opts.log_file and vim.fs.normalize(opts.log_file) or vim.lsp.log.get_filename()
  vim.cmd.split(vim.fn.fnameescape(file))
end, { desc = "Open the codehone server's log (or Neovim's LSP log)" })
