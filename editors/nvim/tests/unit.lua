-- Unit tests of the codehone Neovim plugin that need no server. Run headless:
--   nvim --clean -l editors/nvim/tests/unit.lua [PYTHON]
-- PYTHON (optional) is an interpreter with codehone installed, for the health check's probe.
-- Prints one line per test and a closing "N passed, N failed"; exits 1 on any failure.

local plugin_root = vim.fs.dirname(vim.fs.dirname(vim.fs.normalize(debug.getinfo(1, 'S').source:sub(2))))
vim.opt.rtp:prepend(plugin_root)
vim.cmd.runtime('plugin/codehone.lua')

local python = _G.arg and _G.arg[1] or nil
local tmp = vim.fn.tempname()
vim.fn.mkdir(tmp, 'p')

local tests = {}
local function test(name, fn)
  table.insert(tests, { name = name, fn = fn })
end

local function eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(('%s: expected %s, got %s'):format(what or 'value', vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

local function contains(haystack, needle, what)
  if not haystack:find(needle, 1, true) then
    error(('%s: %q not found in:\n%s'):format(what or 'text', needle, haystack), 2)
  end
end

--- Fresh module state for each test.
local function fresh()
  package.loaded['codehone'] = nil
  package.loaded['codehone.health'] = nil
  return require('codehone')
end

--- A directory that looks like a model directory to the health check.
local function fake_model_dir()
  local dir = vim.fs.joinpath(tmp, 'model')
  vim.fn.mkdir(dir, 'p')
  vim.fn.writefile({ '{"format_version": 1, "architecture": "gpt2"}' }, vim.fs.joinpath(dir, 'codehone.json'))
  vim.fn.writefile({ '{}' }, vim.fs.joinpath(dir, 'tokenizer.json'))
  vim.fn.writefile({}, vim.fs.joinpath(dir, 'model.onnx'))
  return dir
end

--- Run :checkhealth codehone and return its report as one string.
local function checkhealth()
  vim.cmd('silent checkhealth codehone')
  local lines
  for _, buf in ipairs(vim.api.nvim_list_bufs()) do
    if vim.bo[buf].filetype == 'checkhealth' then
      lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
      vim.api.nvim_buf_delete(buf, { force = true })
    end
  end
  assert(lines, 'no checkhealth buffer')
  return table.concat(lines, '\n')
end

test('Neovim has vim.lsp.config and (0.12) inline completion', function()
  local c = fresh()
  assert(c.supported(), 'vim.lsp.config / vim.lsp.enable missing')
  if vim.fn.has('nvim-0.12') == 1 then
    assert(c.has_inline_completion(), 'vim.lsp.inline_completion missing on 0.12')
  end
end)

test('build_cmd: codehone serve from PATH by default', function()
  eq({ 'codehone', 'serve' }, fresh().build_cmd({}))
end)

test('build_cmd: python -m codehone serve, model, log file, -v', function()
  local home = vim.fs.normalize('~')
  eq({
    '/venv/bin/python', '-m', 'codehone', 'serve',
    '--model', home .. '/models/tiny', '--log-file', '/tmp/x.log', '-v',
  }, fresh().build_cmd({
    python = '/venv/bin/python',
    model = '~/models/tiny',
    log_file = '/tmp/x.log',
    verbose = true,
  }))
end)

test('build_cmd: an explicit cmd wins over python', function()
  eq({ '/opt/bin/codehone', 'serve', '--model', '/m' }, fresh().build_cmd({
    cmd = { '/opt/bin/codehone', 'serve' },
    python = '/venv/bin/python',
    model = '/m',
  }))
end)

test('init_options: a JSON object, with maxNewTokens when given', function()
  local c = fresh()
  eq('{}', vim.json.encode(c.init_options({})))
  eq({ maxNewTokens = 32 }, c.init_options({ max_tokens = 32 }))
end)

test('init_options: workspace trust only when asked for', function()
  local c = fresh()
  eq({ trustedWorkspace = true }, c.init_options({ trusted_workspace = true }))
  eq(
    { trustedWorkspace = true, allowModelsOutsideWorkspace = false, maxNewTokens = 4 },
    c.init_options({ trusted_workspace = true, allow_models_outside_workspace = false, max_tokens = 4 })
  )
  eq({ trustedWorkspace = true }, c.lsp_config({ trusted_workspace = true }).init_options)
end)

test('lsp/codehone.lua is a usable vim.lsp.config on its own', function()
  local config = vim.lsp.config.codehone
  eq({ 'codehone', 'serve' }, config.cmd)
  eq('{}', vim.json.encode(config.init_options))
  assert(vim.tbl_contains(config.root_markers, '.git'))
end)

test('setup: configures and enables the codehone client', function()
  local c = fresh()
  c.setup({ cmd = { '/bin/true' }, model = '/m', max_tokens = 8, filetypes = { 'python' }, lsp = { settings = { x = 1 } } })
  local config = vim.lsp.config.codehone
  eq({ '/bin/true', '--model', '/m' }, config.cmd)
  eq({ maxNewTokens = 8 }, config.init_options)
  eq({ 'python' }, config.filetypes)
  eq({ x = 1 }, config.settings)
  assert(vim.lsp.is_enabled('codehone'), 'not enabled')
  eq('<Tab>', c.options.keymaps.accept)
  vim.lsp.enable('codehone', false)
end)

test('setup: keymaps merge with the defaults, or are off', function()
  local c = fresh()
  c.setup({ enable = false, keymaps = { accept = '<C-l>' } })
  eq({ accept = '<C-l>', next = '<M-]>', prev = '<M-[>' }, c.options.keymaps)
  c.setup({ enable = false, keymaps = false })
  eq(false, c.options.keymaps)
  assert(not vim.lsp.is_enabled('codehone'))
end)

test('reuse_client: one server for every buffer', function()
  local c = fresh()
  local config = c.lsp_config({})
  local fake = { name = 'codehone', is_stopped = function() return false end }
  assert(config.reuse_client(fake, { name = 'codehone' }))
  assert(not config.reuse_client({ name = 'other', is_stopped = fake.is_stopped }, { name = 'codehone' }))
end)

test('format_status: model, provider, last latency', function()
  local c = fresh()
  eq('gpt2-tiny · CUDA · 23 ms', c.format_status({
    models = { { model_dir = '/m/gpt2-tiny', architecture = 'gpt2' } },
    provider = 'CUDAExecutionProvider',
    latency_ms = { p50 = 20, p95 = 40, last = 22.6 },
  }))
  eq('no model · CPU', c.format_status({ models = {}, provider = 'CPUExecutionProvider', latency_ms = {} }))
end)

local function menu_item(text, detail, replaced)
  local after = replaced or 0
  return {
    label = text,
    detail = detail or 'codehone · gpt2',
    insertTextFormat = 1,
    textEdit = { newText = text, range = { start = { line = 0, character = 0 }, ['end'] = { line = 0, character = after } } },
  }
end

--- on_complete_done as Neovim calls it, with `line` in a buffer and the cursor at `col`.
local function complete_done(c, line, col, item)
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_set_current_buf(buf)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { line })
  vim.api.nvim_win_set_cursor(0, { 1, col })
  local real_v = vim.v
  local word = item.textEdit.newText:match('^[^\n]*')
  vim.v = setmetatable({
    event = { complete_word = word },
    completed_item = { word = word, user_data = { nvim = { lsp = { completion_item = item } } } },
  }, { __index = real_v })
  local ok, err = pcall(c.on_complete_done, buf)
  vim.v = real_v
  assert(ok, err)
  local lines, cursor = vim.api.nvim_buf_get_lines(buf, 0, -1, false), vim.api.nvim_win_get_cursor(0)
  vim.api.nvim_buf_delete(buf, { force = true })
  return lines, cursor
end

test('convert: codehone menu items insert their whole first line', function()
  local c = fresh()
  eq({ word = 'x + 1)' }, c.convert(menu_item('x + 1)')))
  eq({ word = '    return a' }, c.convert(menu_item('    return a\n    b')))
  eq({ word = '', empty = 1 }, c.convert(menu_item('\n    pass')))
  eq({}, c.convert(menu_item('x + 1', 'other server')))
  local snippet = menu_item('x')
  snippet.insertTextFormat = 2
  eq({}, c.convert(snippet))
end)

test('on_complete_done: adds the other lines of a multi-line item', function()
  local c = fresh()
  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_set_current_buf(buf)
  -- As Neovim leaves it after inserting the word (the first line) before ")":
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, { 'f(a, b)' })
  vim.api.nvim_win_set_cursor(0, { 1, 6 })
  local real_v = vim.v
  vim.v = setmetatable({
    event = { complete_word = 'a, b' },
    completed_item = { word = 'a, b', user_data = { nvim = { lsp = { completion_item = menu_item('a, b\n  c\n  d') } } } },
  }, { __index = real_v })
  local ok, err = pcall(c.on_complete_done, buf)
  vim.v = real_v
  assert(ok, err)
  eq({ 'f(a, b', '  c', '  d)' }, vim.api.nvim_buf_get_lines(buf, 0, -1, false))
  eq({ 3, 3 }, vim.api.nvim_win_get_cursor(0))
  vim.api.nvim_buf_delete(buf, { force = true })
end)

test('on_complete_done: removes the closers after the cursor that the item re-types', function()
  local c = fresh()
  -- Neovim inserted the word "path):" before the auto-closed ")"; the item's range covers it.
  local lines = complete_done(c, 'for n in os.listdir(path):)', 26, menu_item('path):', nil, 1))
  eq({ 'for n in os.listdir(path):' }, lines)
  lines = complete_done(c, 'f(g(a), b)))', 10, menu_item('a), b)', nil, 2))
  eq({ 'f(g(a), b)' }, lines)
  local cursor
  lines, cursor = complete_done(c, 'for n in g(x):) # n', 14, menu_item('x):\n    y', nil, 1))
  eq({ 'for n in g(x):', '    y # n' }, lines)
  eq({ 2, 5 }, cursor)
  -- Only closers are removed, and only as many as the range covers.
  eq({ 'f(xy)' }, (complete_done(c, 'f(xy)', 3, menu_item('x', nil, 1))))
  eq({ 'f(x))' }, (complete_done(c, 'f(x))', 4, menu_item('x)', nil, 0))))
end)

test('ensure_menu_triggers: the menu-only trigger characters when the server gave none', function()
  local c = fresh()
  local caps = { completionProvider = { resolveProvider = false } }
  c.ensure_menu_triggers(caps)
  eq({ '.' }, caps.completionProvider.triggerCharacters)
  caps = { completionProvider = { triggerCharacters = {} } }
  c.ensure_menu_triggers(caps)
  eq({ '.' }, caps.completionProvider.triggerCharacters)
  caps = { completionProvider = { triggerCharacters = { '>' } } }
  c.ensure_menu_triggers(caps)
  eq({ '>' }, caps.completionProvider.triggerCharacters)
  c.ensure_menu_triggers({})
  c.ensure_menu_triggers(nil)
end)

test('accept() is false without a suggestion', function()
  eq(false, fresh().accept())
end)

test('user commands exist', function()
  for _, name in ipairs({ 'CodehoneStatus', 'CodehoneToggle', 'CodehoneRestart', 'CodehoneLog' }) do
    eq(2, vim.fn.exists(':' .. name), name)
  end
end)

test('status() says the server is not running', function()
  local status, err = fresh().status()
  eq(nil, status)
  contains(err, 'not running')
end)

test('checkhealth: a missing command and a missing model are errors', function()
  fresh().setup({ enable = false, cmd = { 'codehone-does-not-exist', 'serve' }, model = tmp .. '/nope' })
  local report = checkhealth()
  contains(report, 'ERROR server command: codehone-does-not-exist not found')
  contains(report, 'is not a directory')
  contains(report, "WARNING the 'codehone' config is not enabled")
end)

test('checkhealth: an incomplete model directory is an error', function()
  local dir = vim.fs.joinpath(tmp, 'half')
  vim.fn.mkdir(dir, 'p')
  vim.fn.writefile({ '{}' }, vim.fs.joinpath(dir, 'codehone.json'))
  fresh().setup({ enable = false, cmd = { 'sh', 'serve' }, model = dir })
  contains(checkhealth(), 'lacks tokenizer.json')
end)

test('checkhealth: command, version and model pass', function()
  if not python then
    io.stdout:write('  (skipped: no PYTHON argument)\n')
    return
  end
  local dir = fake_model_dir()
  fresh().setup({ enable = false, python = python, model = dir })
  local report = checkhealth()
  contains(report, 'OK Neovim')
  contains(report, ('OK server command: %s -m codehone serve --model %s'):format(python, dir))
  contains(report, 'OK server version: codehone')
  contains(report, ('OK model: %s (gpt2)'):format(dir))
  contains(report, 'server: not running')
  if os.getenv('CODEHONE_SHOW_HEALTH') then
    io.stdout:write(report, '\n')
  end
  if report:find('ERROR', 1, true) then
    error('unexpected ERROR in:\n' .. report)
  end
end)

local function say(line)
  io.stdout:write(line, '\n')
end

local passed, failed = 0, 0
for _, t in ipairs(tests) do
  local ok, err = xpcall(t.fn, debug.traceback)
  if ok then
    passed = passed + 1
    say('ok - ' .. t.name)
  else
    failed = failed + 1
    say('not ok - ' .. t.name .. '\n' .. err)
  end
end
vim.fn.delete(tmp, 'rf')
say(('%d passed, %d failed'):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
