import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { basename, formatMs, formatStatusBar, parseStatus, shortProvider } from '../src/status';

const sample = {
  models: [
    {
      folder: 'file:///work/proj',
      model_dir: '/home/ada/.cache/codehone/tiny-gpt2',
      architecture: 'gpt2',
      context_length: 1024,
    },
  ],
  provider: 'CUDAExecutionProvider',
  latency_ms: { p50: 18.4, p95: 41.2, last: 22.6 },
};

describe('parseStatus', () => {
  it('reads models, provider and latency', () => {
    const s = parseStatus(sample);
    assert.deepEqual(s.models, [
      {
        name: 'tiny-gpt2',
        architecture: 'gpt2',
        folder: 'file:///work/proj',
        modelDir: '/home/ada/.cache/codehone/tiny-gpt2',
      },
    ]);
    assert.equal(s.provider, 'CUDA');
    assert.equal(s.providerRaw, 'CUDAExecutionProvider');
    assert.deepEqual(s.latency, { p50: 18.4, p95: 41.2, last: 22.6 });
  });

  it('survives junk', () => {
    for (const junk of [null, undefined, 42, 'x', [], { models: 'no', latency_ms: 3, provider: 7 }]) {
      const s = parseStatus(junk);
      assert.deepEqual(s.models, []);
      assert.equal(s.provider, undefined);
      assert.deepEqual(s.latency, { p50: undefined, p95: undefined, last: undefined });
    }
  });

  it('drops bad latency numbers and bad model entries, names models sensibly', () => {
    const s = parseStatus({
      models: [null, 3, { architecture: 'llama' }, { name: 'mine', model_dir: '/m/x' }, { model_dir: 'C:\\m\\win\\' }],
      latency_ms: { p50: 'fast', p95: Number.NaN, last: null },
    });
    assert.deepEqual(
      s.models.map((m) => m.name),
      ['llama', 'mine', 'win'],
    );
    assert.deepEqual(s.latency, { p50: undefined, p95: undefined, last: undefined });
  });
});

describe('helpers', () => {
  it('shortens provider names', () => {
    assert.equal(shortProvider('CUDAExecutionProvider'), 'CUDA');
    assert.equal(shortProvider('CPUExecutionProvider'), 'CPU');
    assert.equal(shortProvider('TensorrtExecutionProvider'), 'TensorRT');
    assert.equal(shortProvider('OpenVINOExecutionProvider'), 'OpenVINO');
    assert.equal(shortProvider('Weird'), 'Weird');
  });

  it('formats milliseconds', () => {
    assert.equal(formatMs(undefined), '–');
    assert.equal(formatMs(0.3), '<1 ms');
    assert.equal(formatMs(22.6), '23 ms');
    assert.equal(formatMs(1234), '1.2 s');
  });

  it('takes base names', () => {
    assert.equal(basename('/a/b/c/'), 'c');
    assert.equal(basename('c'), 'c');
    assert.equal(basename('C:\\x\\y'), 'y');
  });
});

describe('formatStatusBar', () => {
  it('shows model, provider and last latency when running', () => {
    const v = formatStatusBar('running', parseStatus(sample));
    assert.equal(v.text, '$(sparkle) tiny-gpt2 · CUDA · 23 ms');
    assert.match(v.tooltip, /model: tiny-gpt2 \(gpt2\)/);
    assert.match(v.tooltip, /provider: CUDAExecutionProvider/);
    assert.match(v.tooltip, /latency: last 23 ms, p50 18 ms, p95 41 ms/);
  });

  it('leaves out the latency before the first completion and counts extra models', () => {
    const s = parseStatus({
      models: [{ model_dir: '/m/a' }, { model_dir: '/m/b' }],
      provider: 'CPUExecutionProvider',
      latency_ms: {},
    });
    assert.equal(formatStatusBar('running', s).text, '$(sparkle) a +1 · CPU');
  });

  it('says when there is no model or no status yet', () => {
    assert.equal(formatStatusBar('running', parseStatus({ models: [] })).text, '$(sparkle) no model');
    assert.equal(formatStatusBar('running').text, '$(sparkle) codehone');
  });

  it('shows the client states', () => {
    assert.equal(formatStatusBar('disabled').text, '$(circle-slash) codehone');
    assert.equal(formatStatusBar('starting').text, '$(sync~spin) codehone');
    assert.equal(formatStatusBar('stopped').text, '$(debug-stop) codehone');
    const err = formatStatusBar('error', undefined, 'the server did not start (codehone serve)');
    assert.equal(err.text, '$(error) codehone');
    assert.match(err.tooltip, /did not start \(codehone serve\)/);
    assert.match(err.tooltip, /Show Server Log/);
  });
});
