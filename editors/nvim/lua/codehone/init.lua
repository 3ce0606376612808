--- codehone for Neovim (>= 0.11): code completion from a local model over LSP.
---
--- ```lua
--- require('codehone').setup({ model = '~/models/my-project' })
--- ```
---
--- On Neovim 0.12+ suggestions show as ghost text (`vim.lsp.inline_completion`), accepted with
--- <Tab> (which stays a normal <Tab> when there is no suggestion); menu completions come from
--- <C-x><C-o>. On 0.11 completions come in the popup menu (`vim.lsp.completion`, autotriggered).

local M = {}

--- Name of the LSP config (`vim.lsp.config.codehone`) and of the client.
M.name = 'codehone'

--- @class codehone.Keymaps
--- @field accept? string|false Insert-mode key that accepts the ghost text (default <Tab>).
--- @field next? string|false Next suggestion (default <M-]>).
--- @field prev? string|false Previous suggestion (default <M-[>).

--- @class codehone.Opts
--- @field cmd? string[] Full server command line; default `codehone serve` (or `python -m codehone serve`).
--- @field python? string Interpreter that has codehone installed, used when `cmd` is not given.
--- @field model? string Model directory, passed as `--model` (`~` is expanded).
--- @field log_file? string Server log file, passed as `--log-file`.
--- @field verbose? boolean Pass `-v` (debug logging).
--- @field max_tokens? integer Most tokens per completion (initializationOptions.maxNewTokens).
--- @field trusted_workspace? boolean Let a project's .codehone.toml choose the model that runs
---   (initializationOptions.trustedWorkspace; default false: the server ignores those configs
---   and serves every file with the global model).
--- @field allow_models_outside_workspace? boolean Also when the config names a model outside the
---   project folder (initializationOptions.allowModelsOutsideWorkspace; default false).
--- @field filetypes? string[] Filetypes to attach to; nil: every file buffer.
--- @field root_markers? (string|string[])[] Files that mark a project root.
--- @field inline? boolean Ghost text via vim.lsp.inline_completion; default: true when available (0.12+).
--- @field autotrigger? boolean Popup menu opens by itself; default: true when there is no ghost text.
--- @field keymaps? codehone.Keymaps|false
--- @field enable? boolean Call vim.lsp.enable (default true).
--- @field lsp? table Extra fields merged into the vim.lsp.config entry (on_attach, capabilities, …).

--- @type codehone.Opts
M.defaults = {
  cmd = nil,
  python = nil,
  model = nil,
  log_file = nil,
  verbose = false,
  max_tokens = nil,
  trusted_workspace = nil,
  allow_models_outside_workspace = nil,
  filetypes = nil,
  root_markers = { '.git', 'pyproject.toml', 'package.json', 'Cargo.toml', 'go.mod', '.hg' },
  inline = nil,
  autotrigger = nil,
  keymaps = { accept = '<Tab>', next = '<M-]>', prev = '<M-[>' },
  enable = true,
  lsp = nil,
}

--- The options in force after setup() (nil before).
--- @type codehone.Opts?
M.options = nil

--- Whether completions are on (toggled by :CodehoneToggle).
M.enabled = true

local augroup = vim.api.nvim_create_augroup('codehone', { clear = true })

--- @return boolean
function M.has_inline_completion()
  return vim.lsp.inline_completion ~= nil and vim.lsp.inline_completion.enable ~= nil
end

--- Neovim is new enough for vim.lsp.config / vim.lsp.enable.
--- @return boolean
function M.supported()
  return vim.fn.has('nvim-0.11') == 1 and type(vim.lsp.config) == 'table' and vim.lsp.enable ~= nil
end

--- The server command line for `opts`.
--- @param opts codehone.Opts
--- @return string[]
function M.build_cmd(opts)
  local cmd
  if opts.cmd and #opts.cmd > 0 then
    cmd = vim.deepcopy(opts.cmd)
    cmd[1] = vim.fs.normalize(cmd[1])
  elseif opts.python and opts.python ~= '' then
    cmd = { vim.fs.normalize(opts.python), '-m', 'codehone', 'serve' }
  else
    cmd = { 'codehone', 'serve' }
  end
  if opts.model and opts.model ~= '' then
    vim.list_extend(cmd, { '--model', vim.fs.normalize(opts.model) })
  end
  if opts.log_file and opts.log_file ~= '' then
    vim.list_extend(cmd, { '--log-file', vim.fs.normalize(opts.log_file) })
  end
  if opts.verbose then
    table.insert(cmd, '-v')
  end
  return cmd
end

--- What the server gets as initializationOptions (a JSON object, never `[]`).
--- @param opts codehone.Opts
--- @return table
function M.init_options(opts)
  local out = {}
  if opts.max_tokens then
    out.maxNewTokens = opts.max_tokens
  end
  if opts.trusted_workspace ~= nil then
    out.trustedWorkspace = opts.trusted_workspace == true
  end
  if opts.allow_models_outside_workspace ~= nil then
    out.allowModelsOutsideWorkspace = opts.allow_models_outside_workspace == true
  end
  if next(out) == nil then
    return vim.empty_dict()
  end
  return out
end

--- The vim.lsp.config entry for `opts`.
--- @param opts codehone.Opts
--- @return vim.lsp.Config
function M.lsp_config(opts)
  local config = {
    cmd = M.build_cmd(opts),
    filetypes = opts.filetypes,
    root_markers = opts.root_markers,
    init_options = M.init_options(opts),
    -- One server for all buffers: it holds one model, whatever the project.
    reuse_client = function(client, config)
      return client.name == config.name and not client:is_stopped()
    end,
  }
  return vim.tbl_deep_extend('force', config, opts.lsp or {})
end

--- The running codehone clients (for `bufnr`, if given).
--- @param bufnr? integer
--- @return vim.lsp.Client[]
function M.clients(bufnr)
  return vim.lsp.get_clients({ name = M.name, bufnr = bufnr })
end

--- Accept the ghost text in the current buffer. Returns false when there is none, so a mapping
--- can fall back: `if not require('codehone').accept() then return '<Tab>' end`.
--- @return boolean
function M.accept()
  if not M.has_inline_completion() then
    return false
  end
  return vim.lsp.inline_completion.get() == true
end

--- Is `item` one of codehone's menu items? (The server sets detail to `codehone · MODEL` and
--- puts the whole continuation at the cursor with a plain-text textEdit.)
--- @param item any
--- @return boolean
function M.is_codehone_item(item)
  return type(item) == 'table'
    and type(item.detail) == 'string'
    and item.detail:find('^codehone') ~= nil
    and type(item.textEdit) == 'table'
    and type(item.textEdit.newText) == 'string'
    and item.insertTextFormat ~= 2 -- not a snippet
end

--- `convert` for vim.lsp.completion: Neovim inserts a plain-text textEdit only up to its first
--- whitespace, which would cut a continuation like `x + 1)` to `x`. codehone's items insert
--- their whole first line instead; on_complete_done adds the other lines.
--- @param item lsp.CompletionItem
--- @return table
function M.convert(item)
  if not M.is_codehone_item(item) then
    return {}
  end
  local first = item.textEdit.newText:match('^[^\n]*')
  return { word = first, empty = first == '' and 1 or nil }
end

--- How many characters after the cursor a codehone item replaces: the closing brackets and
--- quotes its text re-types (`path):` before an auto-closed `)`), which its textEdit's range
--- covers. ASCII, so as many bytes as characters in any position encoding.
--- @param item lsp.CompletionItem
--- @return integer
function M.replaced_after_cursor(item)
  local range = item.textEdit.range
  if type(range) ~= 'table' or range.start.line ~= range['end'].line then
    return 0
  end
  return math.max(0, range['end'].character - range.start.character)
end

--- CompleteDone: Neovim inserted the first line of an accepted codehone item at the cursor;
--- remove the closers after the cursor that the item replaces, and put its other lines.
--- @param bufnr integer
function M.on_complete_done(bufnr)
  local word = vim.v.event and vim.v.event.complete_word
  local item = vim.tbl_get(vim.v.completed_item or {}, 'user_data', 'nvim', 'lsp', 'completion_item')
  if word == '' and vim.tbl_isempty(vim.v.completed_item or {}) then
    return -- discarded
  end
  if not M.is_codehone_item(item) then
    return
  end
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  local replaced = M.replaced_after_cursor(item)
  if replaced > 0 then
    local line = vim.api.nvim_buf_get_lines(bufnr, row - 1, row, true)[1]
    local after = line:sub(col + 1, col + replaced)
    if #after == replaced and after:match('^[%)%]}"\'`]+$') then
      vim.api.nvim_buf_set_text(bufnr, row - 1, col, row - 1, col + replaced, { '' })
    end
  end
  local text = item.textEdit.newText
  local nl = text:find('\n', 1, true)
  if not nl then
    return
  end
  local rest = vim.split(text:sub(nl + 1), '\n', { plain = true })
  vim.api.nvim_buf_set_text(bufnr, row - 1, col, row - 1, col, { '', unpack(rest) })
  vim.api.nvim_win_set_cursor(0, { row + #rest, #rest[#rest] })
end

--- Characters that open the menu by itself when it is the automatic channel (no ghost text):
--- the server's own choice for clients without inline completion.
M.menu_trigger_characters = { '.' }

--- The server declares no trigger characters to a client that can show ghost text (Neovim
--- 0.12 says it can, whatever `inline` is): the menu is then asked for. With the menu as the
--- automatic channel (`autotrigger`), give it codehone's menu-only trigger characters.
--- @param server_capabilities table? `client.server_capabilities`
function M.ensure_menu_triggers(server_capabilities)
  local provider = server_capabilities and server_capabilities.completionProvider
  if type(provider) ~= 'table' then
    return
  end
  if provider.triggerCharacters == nil or #provider.triggerCharacters == 0 then
    provider.triggerCharacters = vim.deepcopy(M.menu_trigger_characters)
  end
end

--- Turn codehone's completions on or off in one buffer for one client.
--- @param client vim.lsp.Client
--- @param bufnr integer
--- @param on boolean
local function enable_in_buffer(client, bufnr, on)
  local opts = M.options or M.defaults
  local inline = opts.inline
  if inline == nil then
    inline = M.has_inline_completion()
  end
  inline = inline and M.has_inline_completion()
  local autotrigger = opts.autotrigger
  if autotrigger == nil then
    autotrigger = not inline
  end
  if inline then
    vim.lsp.inline_completion.enable(on, { bufnr = bufnr })
  end
  if autotrigger then
    M.ensure_menu_triggers(client.server_capabilities)
  end
  -- Also with ghost text, so that <C-x><C-o> (the LSP omnifunc) goes through M.convert and
  -- an accepted menu item inserts the whole suggestion.
  vim.lsp.completion.enable(on, client.id, bufnr, { autotrigger = autotrigger, convert = M.convert })
end

--- @param bufnr integer
local function set_keymaps(bufnr)
  local opts = M.options or M.defaults
  local keys = opts.keymaps
  if not keys or not M.has_inline_completion() then
    return
  end
  if opts.inline == false then
    return
  end
  if keys.accept then
    vim.keymap.set('i', keys.accept, function()
      if M.accept() then
        return ''
      end
      -- No suggestion: what the key does without codehone (on 0.12 <Tab> also jumps in snippets).
      if keys.accept == '<Tab>' and vim.snippet and vim.snippet.active({ direction = 1 }) then
        return '<Cmd>lua vim.snippet.jump(1)<CR>'
      end
      return keys.accept
    end, { buffer = bufnr, expr = true, silent = true, desc = 'codehone: accept the suggestion' })
  end
  if keys.next then
    vim.keymap.set('i', keys.next, function()
      vim.lsp.inline_completion.select({ count = 1 })
    end, { buffer = bufnr, desc = 'codehone: next suggestion' })
  end
  if keys.prev then
    vim.keymap.set('i', keys.prev, function()
      vim.lsp.inline_completion.select({ count = -1 })
    end, { buffer = bufnr, desc = 'codehone: previous suggestion' })
  end
end

--- @param args vim.api.keyset.create_autocmd.callback_args
local function on_attach(args)
  local client = vim.lsp.get_client_by_id(args.data.client_id)
  if not client or client.name ~= M.name then
    return
  end
  if M.enabled then
    enable_in_buffer(client, args.buf, true)
  end
  set_keymaps(args.buf)
  vim.api.nvim_clear_autocmds({ group = augroup, buffer = args.buf, event = 'CompleteDone' })
  vim.api.nvim_create_autocmd('CompleteDone', {
    group = augroup,
    buffer = args.buf,
    callback = function(ev)
      M.on_complete_done(ev.buf)
    end,
  })
end

--- Configure and enable the codehone language server.
--- @param opts? codehone.Opts
function M.setup(opts)
  opts = vim.tbl_deep_extend('force', {}, M.defaults, opts or {})
  if opts.keymaps ~= false and type(opts.keymaps) == 'table' then
    opts.keymaps = vim.tbl_extend('force', M.defaults.keymaps, opts.keymaps)
  end
  M.options = opts
  if not M.supported() then
    vim.notify('codehone needs Neovim 0.11 or newer', vim.log.levels.ERROR)
    return
  end
  vim.lsp.config(M.name, M.lsp_config(opts))
  vim.api.nvim_clear_autocmds({ group = augroup })
  vim.api.nvim_create_autocmd('LspAttach', { group = augroup, callback = on_attach })
  if opts.enable ~= false then
    vim.lsp.enable(M.name)
  end
end

--- Turn completions on or off everywhere (the server keeps running).
--- @param on? boolean default: the opposite of now
function M.toggle(on)
  if on == nil then
    on = not M.enabled
  end
  M.enabled = on
  for _, client in ipairs(M.clients()) do
    for bufnr in pairs(client.attached_buffers) do
      enable_in_buffer(client, bufnr, on)
    end
  end
  vim.notify(('codehone: completions %s'):format(on and 'on' or 'off'))
end

--- Stop the server and start it again for the open buffers.
function M.restart()
  local clients = M.clients()
  for _, client in ipairs(clients) do
    client:stop()
  end
  vim.wait(5000, function()
    for _, client in ipairs(clients) do
      if not client:is_stopped() then
        return false
      end
    end
    return true
  end, 20)
  vim.lsp.enable(M.name)
end

--- `codehone/status` from the running server, synchronously.
--- @param timeout_ms? integer
--- @return table? status, string? error
function M.status(timeout_ms)
  local client = M.clients()[1]
  if not client then
    return nil, 'the server is not running (open a file that it attaches to)'
  end
  local bufnr = next(client.attached_buffers) or vim.api.nvim_get_current_buf()
  local resp, err = client:request_sync('codehone/status', {}, timeout_ms or 3000, bufnr)
  if not resp then
    return nil, err or 'no answer'
  end
  if resp.err then
    return nil, resp.err.message or vim.inspect(resp.err)
  end
  return resp.result
end

--- One line for a status bar: `gpt2 · CUDA · 23 ms`.
--- @param status table
--- @return string
function M.format_status(status)
  local parts = {}
  local model = status.models and status.models[1]
  if model then
    local dir = type(model.model_dir) == 'string' and vim.fs.basename(model.model_dir) or nil
    table.insert(parts, model.name or dir or model.architecture or 'model')
  else
    table.insert(parts, 'no model')
  end
  if type(status.provider) == 'string' then
    local short = status.provider:gsub('ExecutionProvider$', '')
    table.insert(parts, short)
  end
  local last = type(status.latency_ms) == 'table' and status.latency_ms.last or nil
  if type(last) == 'number' then
    table.insert(parts, ('%d ms'):format(math.floor(last + 0.5)))
  end
  return table.concat(parts, ' · ')
end

return M
