// The bundled extension (dist/extension.js) activated under plain node against a fake `vscode`
// module (fake-vscode.ts) and, when CODEHONE_TEST_PYTHON and CODEHONE_TEST_MODEL are set (as
// tests/test_editors_vscode.py does), the real `codehone serve` on a tiny model: commands,
// status bar, workspace trust, inline and menu completion through vscode-languageclient.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import Module from 'node:module';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';

import * as fake from './fake-vscode';

const PYTHON = process.env.CODEHONE_TEST_PYTHON;
const MODEL = process.env.CODEHONE_TEST_MODEL;
const realServer = PYTHON && MODEL ? false : 'set CODEHONE_TEST_PYTHON and CODEHONE_TEST_MODEL (tests/test_editors_vscode.py does)';

type Extension = { activate(ctx: unknown): Promise<void>; deactivate(): Promise<void> };
let extension: Extension;
let subscriptions: Array<{ dispose(): unknown }> = [];

before(() => {
  // Route `require('vscode')` inside the bundle to the fake.
  const mod = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
  const load = mod._load;
  const api = new Proxy(fake as Record<string, unknown>, {
    get: (t, prop: string) => (prop in t ? t[prop] : fake.autoStub(prop)),
  });
  mod._load = function (request: string, ...rest: unknown[]) {
    return request === 'vscode' ? api : load.call(this, request, ...rest);
  };
  extension = require(join(process.cwd(), 'dist', 'extension.js')) as Extension;
});

function reset(settings: typeof fake.settings, trusted = true): void {
  for (const k of Object.keys(fake.settings)) delete fake.settings[k];
  Object.assign(fake.settings, settings);
  fake.state.trusted = trusted;
  fake.statusItems.length = 0;
  fake.messages.length = 0;
  fake.logLines.length = 0;
  fake.commandHandlers.clear();
  for (const k of Object.keys(fake.providers)) delete fake.providers[k];
  fake.openDocuments.length = 0;
}

async function activate(): Promise<void> {
  subscriptions = [];
  await extension.activate({ subscriptions, logUri: fake.Uri.file(join(process.cwd(), 'out', 'logs')) });
}

async function deactivate(): Promise<void> {
  await extension.deactivate();
  for (const s of subscriptions) s.dispose();
}

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 30000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}; status: ${statusText()}\n${fake.logLines.join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function statusText(): string {
  return fake.statusItems[0]?.text ?? '(no status item)';
}

/** Live `codehone serve` processes that are children of this node process. */
function serverPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (Number(fields[1]) === process.pid && fields[0] !== 'Z' && /codehone.*serve/.test(cmdline)) {
        pids.push(Number(entry));
      }
    } catch {
      // the process went away while we looked
    }
  }
  return pids;
}

class Doc {
  readonly uri: fake.Uri;
  readonly fileName: string;
  readonly languageId = 'python';
  readonly version = 1;
  readonly isClosed = false;
  readonly isUntitled = false;
  readonly isDirty = false;
  readonly eol = 1;
  constructor(
    file: string,
    private readonly text: string,
  ) {
    this.uri = fake.Uri.file(file);
    this.fileName = this.uri.fsPath;
  }
  get lineCount(): number {
    return this.text.split('\n').length;
  }
  getText(): string {
    return this.text;
  }
  lineAt(line: number) {
    const text = this.text.split('\n')[line] ?? '';
    return { text, range: new fake.Range(line, 0, line, text.length) };
  }
  offsetAt(p: fake.Position): number {
    const lines = this.text.split('\n');
    return lines.slice(0, p.line).reduce((n, l) => n + l.length + 1, 0) + p.character;
  }
  getWordRangeAtPosition(): undefined {
    return undefined;
  }
  validatePosition(p: fake.Position): fake.Position {
    return p;
  }
}

describe('activation (no server)', () => {
  beforeEach(() => reset({}));

  it('registers the commands and shows the status bar item, with completions off', async () => {
    reset({ 'codehone.enable': { globalValue: false } });
    await activate();
    try {
      assert.deepEqual(
        [...fake.commandHandlers.keys()].sort(),
        ['codehone.restartServer', 'codehone.showLog', 'codehone.toggleCompletions'],
      );
      assert.equal(fake.statusItems.length, 1);
      assert.equal(fake.statusItems[0].visible, true);
      assert.equal(statusText(), '$(circle-slash) codehone');
      assert.equal(fake.statusItems[0].command, 'codehone.toggleCompletions');
      assert.deepEqual(serverPids(), []);
    } finally {
      await deactivate();
    }
  });

  it('ignores a workspace command in an untrusted workspace and says the server did not start', async () => {
    reset(
      {
        'codehone.server.command': { globalValue: ['/nonexistent/user-codehone', 'serve'], workspaceValue: ['/tmp/evil'] },
        'codehone.model': { workspaceValue: './evil-model' },
      },
      false,
    );
    await activate();
    try {
      await until('the start to fail', () => statusText() === '$(error) codehone');
      const started = fake.logLines.find((l) => l.includes('Starting:'));
      assert.ok(started?.includes('/nonexistent/user-codehone serve'), started);
      assert.ok(!fake.logLines.some((l) => l.includes('/tmp/evil') && l.includes('Starting:')));
      assert.ok(!started?.includes('evil-model'), started);
      assert.ok(
        fake.messages.some((m) => m.includes('not trusted') && m.includes('codehone.server.command') && m.includes('codehone.model')),
        fake.messages.join('\n'),
      );
      assert.match(String(fake.statusItems[0].tooltip), /did not start/);
    } finally {
      await deactivate();
    }
  });
});

describe('against the real server', { skip: realServer }, () => {
  let doc: Doc;

  before(async () => {
    reset({
      'codehone.server.command': { globalValue: [PYTHON, '-m', 'codehone', 'serve'] },
      'codehone.model': { globalValue: MODEL },
      'codehone.debounceMs': { globalValue: 0 },
    });
    doc = new Doc(join(process.cwd(), 'out', 'shapes.py'), 'import math\n\n\ndef area(radius):\n    return math.pi * radius ** 2\n\n\nresult = area(');
    fake.openDocuments.push(doc);
    await activate();
  });

  after(async () => {
    await deactivate();
    await until('the server to exit after deactivate', () => serverPids().length === 0, 15000);
  });

  it('shows the model and the provider from codehone/status', async () => {
    const text = await until('the status bar to show the model', () => statusText().startsWith('$(sparkle) ') && statusText() !== '$(sparkle) codehone' && statusText());
    const model = MODEL!.replace(/\/+$/, '').split('/').pop();
    assert.match(text, new RegExp(`^\\$\\(sparkle\\) ${model} · (CUDA|CPU)`));
    assert.match(String(fake.statusItems[0].tooltip), /provider: (CUDA|CPU)ExecutionProvider/);
    assert.equal(serverPids().length, 1);
  });

  it('answers inline completion through the language client, then shows the latency', async () => {
    const provider = (fake.providers.registerInlineCompletionItemProvider ?? [])[0] as {
      provideInlineCompletionItems: (...a: unknown[]) => Promise<unknown>;
    };
    assert.ok(provider, 'no inline completion provider registered');
    // The random model may have nothing to say at one place: try a few, as a user types on.
    const places = [new fake.Position(7, 14), new fake.Position(4, 32), new fake.Position(3, 17)];
    let offered = 0;
    for (const place of places) {
      const token = new fake.CancellationTokenSource().token;
      const result = (await provider.provideInlineCompletionItems(doc, place, { triggerKind: 0 }, token)) as
        | fake.InlineCompletionList
        | fake.InlineCompletionItem[];
      assert.ok(result, 'no answer');
      const items = Array.isArray(result) ? result : result.items;
      assert.ok(Array.isArray(items));
      for (const item of items) {
        assert.equal(typeof item.insertText, 'string');
        assert.ok((item.insertText as string).length > 0);
        assert.deepEqual([item.range?.start.line, item.range?.start.character], [place.line, place.character]);
      }
      offered += items.length;
      if (offered > 0) break;
    }
    assert.ok(offered > 0, 'no inline completion at any of the places tried');
    await until('the latency in the status bar', () => / ms$/.test(statusText()) || / s$/.test(statusText()), 5000);
  });

  it('answers menu completion with a codehone item', async () => {
    const provider = (fake.providers.registerCompletionItemProvider ?? [])[0] as {
      provideCompletionItems: (...a: unknown[]) => Promise<unknown>;
    };
    assert.ok(provider, 'no completion provider registered');
    const token = new fake.CancellationTokenSource().token;
    const result = (await provider.provideCompletionItems(doc, new fake.Position(7, 14), token, { triggerKind: 0 })) as
      | fake.CompletionList
      | fake.CompletionItem[];
    assert.ok(result, 'no answer');
    const items = Array.isArray(result) ? result : result.items;
    for (const item of items) assert.match(String(item.detail), /^codehone/);
  });

  it('toggling completions off stops the server; on starts it again', async () => {
    await fake.commands.executeCommand('codehone.toggleCompletions');
    assert.equal(fake.settings['codehone.enable'].globalValue, false);
    await until('the server to stop', () => serverPids().length === 0 && statusText() === '$(circle-slash) codehone', 15000);
    await fake.commands.executeCommand('codehone.toggleCompletions');
    await until('the server to run again', () => serverPids().length === 1 && statusText().includes('·'), 30000);
  });
});
