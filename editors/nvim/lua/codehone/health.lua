--- :checkhealth codehone — the Neovim version, the server command, the model and the provider.

local M = {}

local health = vim.health

--- Files a model directory must hold (see server/codehone/core/model_dir.py).
local MODEL_FILES = { 'codehone.json', 'tokenizer.json' }

--- The `--model DIR` argument of a command line, if any.
--- @param cmd string[]
--- @return string?
local function model_arg(cmd)
  for i, a in ipairs(cmd) do
    if a == '--model' then
      return cmd[i + 1]
    end
    local v = a:match('^%-%-model=(.+)$')
    if v then
      return v
    end
  end
end

local function check_neovim()
  local codehone = require('codehone')
  local v = vim.version()
  local version = tostring(v)
  if not codehone.supported() then
    health.error(('Neovim %s: codehone needs 0.11 or newer'):format(version))
    return false
  end
  if codehone.has_inline_completion() then
    health.ok(('Neovim %s: inline completion (ghost text) and menu completion'):format(version))
  else
    health.ok(('Neovim %s: menu completion (ghost text needs 0.12)'):format(version))
  end
  return true
end

--- @return string[]?
local function check_config()
  local codehone = require('codehone')
  if not codehone.options then
    health.warn("setup() has not been called", { "Add require('codehone').setup({...}) to your config" })
  end
  local config = vim.lsp.config[codehone.name]
  if not config or not config.cmd then
    health.error("no vim.lsp.config for 'codehone'", { "Call require('codehone').setup()" })
    return nil
  end
  if type(config.cmd) == 'function' then
    health.info('server command: a function (cannot be checked)')
    return nil
  end
  local cmd = config.cmd --[[@as string[] ]]
  if vim.lsp.is_enabled and not vim.lsp.is_enabled(codehone.name) then
    health.warn("the 'codehone' config is not enabled", { "vim.lsp.enable('codehone')" })
  end
  return cmd
end

--- @param cmd string[]
local function check_command(cmd)
  local line = table.concat(cmd, ' ')
  local exe = vim.fn.exepath(cmd[1])
  if exe == '' then
    health.error(('server command: %s not found'):format(cmd[1]), {
      'Install codehone (pip install codehone) where Neovim can find it,',
      "or pass setup({ python = '/path/to/venv/bin/python' }) or setup({ cmd = {...} })",
    })
    return
  end
  health.ok(('server command: %s'):format(line))
  -- `codehone --version` (or `python -m codehone --version`) is quick: it imports no model code.
  local probe
  if cmd[2] == 'serve' then
    probe = { cmd[1], '--version' }
  elseif cmd[2] == '-m' and cmd[3] == 'codehone' then
    probe = { cmd[1], '-m', 'codehone', '--version' }
  end
  if probe then
    local ok, res = pcall(function()
      return vim.system(probe, { text = true }):wait(10000)
    end)
    if ok and res.code == 0 then
      health.ok(('server version: %s'):format(vim.trim((res.stdout or '') .. (res.stderr or ''))))
    else
      local why = ok and vim.trim((res.stderr or '') .. (res.stdout or '')) or tostring(res)
      health.error(('%s failed: %s'):format(table.concat(probe, ' '), why))
    end
  end
end

--- @param cmd string[]
local function check_model(cmd)
  local dir = model_arg(cmd)
  if not dir then
    health.info('model: none given; the server uses its default model')
    return
  end
  if vim.fn.isdirectory(dir) == 0 then
    health.error(('model: %s is not a directory'):format(dir))
    return
  end
  local missing = {}
  for _, f in ipairs(MODEL_FILES) do
    if vim.fn.filereadable(vim.fs.joinpath(dir, f)) == 0 then
      table.insert(missing, f)
    end
  end
  if #missing > 0 then
    health.error(('model: %s lacks %s'):format(dir, table.concat(missing, ', ')), {
      'Point setup({ model = ... }) at a directory written by `codehone export` or `codehone pretrain`',
    })
    return
  end
  local manifest = vim.fs.joinpath(dir, 'codehone.json')
  local ok, data = pcall(function()
    return vim.json.decode(table.concat(vim.fn.readfile(manifest), '\n'))
  end)
  if not ok or type(data) ~= 'table' then
    health.error(('model: %s: codehone.json is not valid JSON'):format(dir))
    return
  end
  local model_file = type(data.model_file) == 'string' and data.model_file or 'model.onnx'
  if vim.fn.filereadable(vim.fs.joinpath(dir, model_file)) == 0 then
    health.error(('model: %s lacks %s'):format(dir, model_file))
    return
  end
  health.ok(('model: %s (%s)'):format(dir, tostring(data.architecture or 'unknown architecture')))
end

local function check_server()
  local codehone = require('codehone')
  local clients = codehone.clients()
  if #clients == 0 then
    health.info('server: not running (it starts when you open a file); provider unknown until then')
    return
  end
  local status, err = codehone.status(5000)
  if not status then
    health.error(('server: running (client %d) but codehone/status failed: %s'):format(clients[1].id, err))
    return
  end
  health.ok(('server: running (client %d): %s'):format(clients[1].id, codehone.format_status(status)))
  for _, m in ipairs(status.models or {}) do
    health.ok(('loaded model: %s (%s)'):format(tostring(m.model_dir), tostring(m.architecture)))
  end
  local provider = tostring(status.provider or 'unknown')
  local reason = status.provider_reason and (' (%s)'):format(status.provider_reason) or ''
  if provider:match('^CPU') then
    health.warn(('provider: %s%s'):format(provider, reason), {
      'Completions run on the CPU. For the GPU install onnxruntime-gpu with CUDA 12 and cuDNN 9.',
    })
  elseif provider == 'unknown' then
    health.warn('provider: the server did not say')
  else
    health.ok(('provider: %s%s'):format(provider, reason))
  end
end

function M.check()
  health.start('codehone')
  if not check_neovim() then
    return
  end
  local cmd = check_config()
  if cmd then
    check_command(cmd)
    check_model(cmd)
  end
  check_server()
end

return M
