// package.json and the code must agree: commands, settings with their defaults, and the
// settings that workspace trust restricts.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { COMMANDS, DEBOUNCE_RANGE, DEFAULTS, MAX_TOKENS_RANGE, RESTRICTED_KEYS, SECTION } from '../src/config';

// Tests run from out/test/ (bundled) with the package root as the working directory.
const pkg = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8'));

describe('package.json', () => {
  it('contributes exactly the commands the extension registers', () => {
    const declared = pkg.contributes.commands.map((c: { command: string }) => c.command).sort();
    assert.deepEqual(declared, Object.values(COMMANDS).sort());
  });

  it('declares every setting the extension reads, with the same default', () => {
    const props = pkg.contributes.configuration.properties;
    for (const [key, dflt] of Object.entries(DEFAULTS)) {
      const p = props[`${SECTION}.${key}`];
      assert.ok(p, `missing ${SECTION}.${key}`);
      assert.deepEqual(p.default, dflt, `${SECTION}.${key} default`);
    }
    assert.ok(props[`${SECTION}.trace.server`], 'trace setting for vscode-languageclient');
  });

  it('declares the same ranges the code clamps to', () => {
    const props = pkg.contributes.configuration.properties;
    assert.deepEqual([props['codehone.maxTokens'].minimum, props['codehone.maxTokens'].maximum], [...MAX_TOKENS_RANGE]);
    assert.deepEqual([props['codehone.debounceMs'].minimum, props['codehone.debounceMs'].maximum], [...DEBOUNCE_RANGE]);
  });

  it('restricts the settings that choose a program or a model in untrusted workspaces', () => {
    const trust = pkg.capabilities.untrustedWorkspaces;
    assert.equal(trust.supported, 'limited');
    assert.deepEqual(
      [...trust.restrictedConfigurations].sort(),
      RESTRICTED_KEYS.map((k) => `${SECTION}.${k}`).sort(),
    );
  });

  it('bundles to dist/extension.js and uses vscode-languageclient 11', () => {
    assert.equal(pkg.main, './dist/extension.js');
    assert.match(pkg.dependencies['vscode-languageclient'], /^\^?11\./);
    assert.match(pkg.engines.vscode, /^\^1\.(9\d|\d{3})\./);
  });
});
