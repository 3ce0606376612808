-- Test-only helpers for tests/test_editors_nvim.py, which calls them through
-- `nvim --server ADDR --remote-expr`. Each returns plain data (encoded as JSON there).
local H = {}

local function codehone_client(bufnr)
  return vim.lsp.get_clients({ name = 'codehone', bufnr = bufnr })[1]
end

--- Record every inlineCompletion and completion answer the codehone client gets.
H.log = { inline = {}, completion = {} }

local function instrument(client)
  if client._codehone_test then
    return
  end
  client._codehone_test = true
  local request = client.request
  client.request = function(self, method, params, handler, bufnr)
    local key = method == 'textDocument/inlineCompletion' and 'inline'
      or method == 'textDocument/completion' and 'completion'
      or nil
    if key and handler then
      local inner = handler
      handler = function(err, result, ctx)
        table.insert(H.log[key], { err = err, result = result, params = params })
        return inner(err, result, ctx)
      end
    end
    return request(self, method, params, handler, bufnr)
  end
end

--- Is the current buffer attached, initialized, and (0.12) showing inline completions?
function H.ready()
  local bufnr = vim.api.nvim_get_current_buf()
  local client = codehone_client(bufnr)
  if not client or not client.initialized then
    return false
  end
  instrument(client)
  local codehone = require('codehone')
  if codehone.has_inline_completion() and codehone.options.inline ~= false then
    local ok, cmds = pcall(vim.api.nvim_get_autocmds, { group = ('nvim.lsp.inline_completion:%d'):format(bufnr) })
    return ok and #cmds > 0
  end
  return true
end

function H.state()
  local info = vim.fn.complete_info({ 'items', 'selected', 'pum_visible' })
  local items = {}
  for _, it in ipairs(info.items or {}) do
    local lsp_item = vim.tbl_get(it, 'user_data', 'nvim', 'lsp', 'completion_item')
    table.insert(items, { word = it.word, abbr = it.abbr, menu = it.menu, lsp = lsp_item })
  end
  return {
    mode = vim.api.nvim_get_mode().mode,
    lines = vim.api.nvim_buf_get_lines(0, 0, -1, false),
    cursor = vim.api.nvim_win_get_cursor(0),
    pum = info.pum_visible == 1,
    items = items,
    inline_log = #H.log.inline,
    completion_log = #H.log.completion,
  }
end

--- The ghost text on screen: each extmark of the inline completion namespace, as text.
function H.ghost()
  local ns = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  if not ns then
    return {}
  end
  local out = {}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
    local d = m[4]
    local first = {}
    for _, chunk in ipairs(d.virt_text or {}) do
      table.insert(first, chunk[1])
    end
    local rest = {}
    for _, line in ipairs(d.virt_lines or {}) do
      local t = {}
      for _, chunk in ipairs(line) do
        table.insert(t, chunk[1])
      end
      table.insert(rest, table.concat(t))
    end
    table.insert(out, { row = m[2], col = m[3], text = table.concat(first), lines = rest, hl = vim.tbl_get(d, 'virt_text', 1, 2) })
  end
  return out
end

--- The last recorded answer of `kind` ('inline' or 'completion') with at least one item.
function H.last(kind)
  for i = #H.log[kind], 1, -1 do
    local e = H.log[kind][i]
    local items = e.result and (e.result.items or e.result) or {}
    if #items > 0 then
      return { items = items, params = e.params }
    end
  end
  return vim.NIL
end

function H.clear_log()
  H.log.inline, H.log.completion = {}, {}
  return true
end

--- The screen as rows of cells {text, fg, bg, bold, italic, underline} after a redraw,
--- with the default colours, for a picture of the editor.
function H.screen()
  vim.cmd.redraw({ bang = true })
  local normal = vim.api.nvim_get_hl(0, { name = 'Normal', link = false })
  local rows = {}
  for r = 0, vim.o.lines - 1 do
    local row = {}
    for c = 0, vim.o.columns - 1 do
      local ok, cell = pcall(vim.api.nvim__inspect_cell, 1, r, c)
      if ok then
        local a = cell[2] or {}
        table.insert(row, {
          cell[1],
          a.foreground or vim.NIL,
          a.background or vim.NIL,
          a.bold or false,
          a.italic or false,
          (a.underline or a.undercurl) or false,
          a.reverse or false,
        })
      else
        table.insert(row, { ' ', vim.NIL, vim.NIL, false, false, false, false })
      end
    end
    table.insert(rows, row)
  end
  -- The cursor's screen cell (0-based), which the grid itself does not mark.
  local pos = vim.fn.screenpos(0, vim.fn.line('.'), vim.fn.col('.'))
  return {
    rows = rows,
    fg = normal.fg or 0xE0E2EA,
    bg = normal.bg or 0x14161B,
    cursor = { pos.row - 1, pos.col - 1 },
    mode = vim.api.nvim_get_mode().mode,
  }
end

return H
