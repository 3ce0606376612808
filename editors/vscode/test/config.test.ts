import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  DEFAULTS,
  displayCommand,
  effectiveValue,
  expandPath,
  initializationOptions,
  type Inspected,
  needsRestart,
  readSettings,
  serverCommand,
  serverSettings,
  type SettingKey,
  type Settings,
} from '../src/config';

const ctx = { homeDir: '/home/ada', workspaceFolder: '/work/proj', env: { MODELS: '/srv/models' } };

function inspector(values: Partial<Record<SettingKey, Inspected>>) {
  return (key: SettingKey): Inspected => ({ defaultValue: DEFAULTS[key], ...(values[key] ?? {}) });
}

function settings(over: Partial<Settings> = {}): Settings {
  return { ...readSettings(inspector({}), true).settings, ...over };
}

describe('effectiveValue', () => {
  const all: Inspected<string> = {
    defaultValue: 'd',
    globalValue: 'g',
    workspaceValue: 'w',
    workspaceFolderValue: 'f',
  };

  it('takes folder > workspace > user > default', () => {
    assert.equal(effectiveValue(all, 'model', true).value, 'f');
    assert.equal(effectiveValue({ ...all, workspaceFolderValue: undefined }, 'model', true).value, 'w');
    assert.equal(effectiveValue({ defaultValue: 'd', globalValue: 'g' }, 'model', true).value, 'g');
    assert.equal(effectiveValue({ defaultValue: 'd' }, 'model', true).value, 'd');
    assert.equal(effectiveValue(undefined, 'model', true).value, undefined);
  });

  it('ignores workspace values of restricted keys in an untrusted workspace', () => {
    for (const key of ['model', 'server.command', 'server.pythonPath']) {
      const r = effectiveValue(all, key, false);
      assert.equal(r.value, 'g', key);
      assert.equal(r.ignoredWorkspaceValue, true, key);
    }
    const noUser = effectiveValue({ defaultValue: 'd', workspaceValue: 'w' }, 'model', false);
    assert.deepEqual(noUser, { value: 'd', ignoredWorkspaceValue: true });
  });

  it('keeps workspace values of harmless keys in an untrusted workspace', () => {
    assert.deepEqual(effectiveValue(all, 'maxTokens', false), { value: 'f', ignoredWorkspaceValue: false });
    assert.deepEqual(effectiveValue(all, 'enable', false), { value: 'f', ignoredWorkspaceValue: false });
  });

  it('reports nothing ignored when the workspace set nothing', () => {
    assert.equal(effectiveValue({ defaultValue: 'd', globalValue: 'g' }, 'model', false).ignoredWorkspaceValue, false);
  });
});

describe('readSettings', () => {
  it('gives the defaults when nothing is set', () => {
    const { settings: s, ignored } = readSettings(inspector({}), true);
    assert.deepEqual(s, {
      enable: true,
      command: [],
      pythonPath: '',
      model: '',
      maxTokens: 64,
      debounceMs: 75,
      verbose: false,
      allowModelsOutsideWorkspace: false,
    });
    assert.deepEqual(ignored, []);
  });

  it('falls back to defaults when inspect knows nothing', () => {
    const { settings: s } = readSettings(() => undefined, true);
    assert.equal(s.maxTokens, 64);
    assert.equal(s.enable, true);
  });

  it('drops a malicious workspace command and model when untrusted, and says so', () => {
    const inspect = inspector({
      'server.command': { workspaceValue: ['/tmp/evil', 'serve'] },
      'server.pythonPath': { workspaceValue: './venv/bin/python', globalValue: '/usr/bin/python3' },
      model: { workspaceFolderValue: './evil-model' },
      maxTokens: { workspaceValue: 16 },
    });
    const untrusted = readSettings(inspect, false);
    assert.deepEqual(untrusted.settings.command, []);
    assert.equal(untrusted.settings.pythonPath, '/usr/bin/python3');
    assert.equal(untrusted.settings.model, '');
    assert.equal(untrusted.settings.maxTokens, 16);
    assert.deepEqual(untrusted.ignored.sort(), ['model', 'server.command', 'server.pythonPath']);

    const trusted = readSettings(inspect, true);
    assert.deepEqual(trusted.settings.command, ['/tmp/evil', 'serve']);
    assert.equal(trusted.settings.pythonPath, './venv/bin/python');
    assert.equal(trusted.settings.model, './evil-model');
    assert.deepEqual(trusted.ignored, []);
  });

  it('clamps numbers and repairs wrong types', () => {
    const { settings: s } = readSettings(
      inspector({
        maxTokens: { globalValue: 100000 },
        debounceMs: { globalValue: -5 },
        enable: { globalValue: 'yes' },
        'server.command': { globalValue: '/opt/codehone/bin/codehone' },
        model: { globalValue: '  /m  ' },
      }),
      true,
    );
    assert.equal(s.maxTokens, 512);
    assert.equal(s.debounceMs, 0);
    assert.equal(s.enable, true);
    assert.deepEqual(s.command, ['/opt/codehone/bin/codehone']);
    assert.equal(s.model, '/m');
    const nan = readSettings(inspector({ maxTokens: { globalValue: Number.NaN } }), true).settings;
    assert.equal(nan.maxTokens, 64);
    const frac = readSettings(inspector({ maxTokens: { globalValue: 12.6 } }), true).settings;
    assert.equal(frac.maxTokens, 13);
  });
});

describe('expandPath', () => {
  it('expands ~, ${userHome}, ${workspaceFolder} and ${env:X}', () => {
    assert.equal(expandPath('~', ctx), '/home/ada');
    assert.equal(expandPath('~/models/tiny', ctx), '/home/ada/models/tiny');
    assert.equal(expandPath('${userHome}/m', ctx), '/home/ada/m');
    assert.equal(expandPath('${workspaceFolder}/.codehone/model', ctx), '/work/proj/.codehone/model');
    assert.equal(expandPath('${env:MODELS}/tiny', ctx), '/srv/models/tiny');
    assert.equal(expandPath('${env:NOPE}/tiny', ctx), '/tiny');
    assert.equal(expandPath('/abs/~/x', ctx), '/abs/~/x');
  });

  it('leaves ${workspaceFolder} alone when there is no folder', () => {
    assert.equal(expandPath('${workspaceFolder}/m', { ...ctx, workspaceFolder: undefined }), '${workspaceFolder}/m');
  });
});

describe('serverCommand', () => {
  it('runs codehone serve from PATH by default', () => {
    assert.deepEqual(serverCommand(settings(), ctx), { command: 'codehone', args: ['serve'] });
  });

  it('runs the module with the chosen interpreter', () => {
    assert.deepEqual(serverCommand(settings({ pythonPath: '~/venv/bin/python' }), ctx), {
      command: '/home/ada/venv/bin/python',
      args: ['-m', 'codehone', 'serve'],
    });
  });

  it('prefers an explicit command over the interpreter', () => {
    const cmd = serverCommand(
      settings({ command: ['${userHome}/bin/codehone', 'serve'], pythonPath: '/usr/bin/python3' }),
      ctx,
    );
    assert.deepEqual(cmd, { command: '/home/ada/bin/codehone', args: ['serve'] });
  });

  it('adds --model, --log-file and -v', () => {
    const cmd = serverCommand(settings({ model: '${workspaceFolder}/model', verbose: true }), {
      ...ctx,
      logFile: '/logs/server.log',
    });
    assert.deepEqual(cmd.args, ['serve', '--model', '/work/proj/model', '--log-file', '/logs/server.log', '-v']);
  });

  it('displays the command with quoting where needed', () => {
    assert.equal(
      displayCommand({ command: '/opt/my tools/codehone', args: ['serve', '--model', '/m'] }),
      '"/opt/my tools/codehone" serve --model /m',
    );
  });
});

describe('serverSettings and needsRestart', () => {
  it('sends maxTokens to the server as maxNewTokens', () => {
    assert.deepEqual(serverSettings(settings({ maxTokens: 32 })), { maxNewTokens: 32 });
  });

  it('passes workspace trust in initializationOptions, and models outside only when trusted', () => {
    assert.deepEqual(initializationOptions(settings({ maxTokens: 16 }), true), {
      maxNewTokens: 16,
      clientDebouncesInline: true,
      trustedWorkspace: true,
      allowModelsOutsideWorkspace: false,
    });
    const outside = settings({ allowModelsOutsideWorkspace: true });
    assert.equal(initializationOptions(outside, true).allowModelsOutsideWorkspace, true);
    assert.deepEqual(initializationOptions(outside, false), {
      maxNewTokens: DEFAULTS.maxTokens,
      clientDebouncesInline: true,
      trustedWorkspace: false,
      allowModelsOutsideWorkspace: false,
    });
    // a workspace cannot grant it itself in an untrusted workspace
    const fromWorkspace = readSettings(
      inspector({ allowModelsOutsideWorkspace: { workspaceValue: true } }),
      false,
    );
    assert.equal(fromWorkspace.settings.allowModelsOutsideWorkspace, false);
    assert.deepEqual(fromWorkspace.ignored, ['allowModelsOutsideWorkspace']);
  });

  it('restarts for command-line settings only', () => {
    const only = (key: string) => (k: string) => k === key;
    assert.equal(needsRestart(only('codehone.model')), true);
    assert.equal(needsRestart(only('codehone.server.command')), true);
    assert.equal(needsRestart(only('codehone.server.pythonPath')), true);
    assert.equal(needsRestart(only('codehone.server.verbose')), true);
    assert.equal(needsRestart(only('codehone.allowModelsOutsideWorkspace')), true);
    assert.equal(needsRestart(only('codehone.maxTokens')), false);
    assert.equal(needsRestart(only('codehone.debounceMs')), false);
    assert.equal(needsRestart(only('codehone.enable')), false);
  });
});
