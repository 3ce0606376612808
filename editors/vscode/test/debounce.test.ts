import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { type CancellationLike, debounce, throttle } from '../src/debounce';

class Token implements CancellationLike {
  isCancellationRequested = false;
  private listeners: Array<() => unknown> = [];
  onCancellationRequested(l: () => unknown) {
    this.listeners.push(l);
    return { dispose: () => (this.listeners = this.listeners.filter((x) => x !== l)) };
  }
  cancel() {
    this.isCancellationRequested = true;
    for (const l of this.listeners) l();
  }
  get listenerCount() {
    return this.listeners.length;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('debounce', () => {
  it('resolves true after the wait', async () => {
    const t = new Token();
    const t0 = Date.now();
    assert.equal(await debounce(30, t), true);
    assert.ok(Date.now() - t0 >= 25);
    assert.equal(t.listenerCount, 0);
  });

  it('resolves false as soon as the token is cancelled', async () => {
    const t = new Token();
    const t0 = Date.now();
    const p = debounce(5000, t);
    setTimeout(() => t.cancel(), 10);
    assert.equal(await p, false);
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(t.listenerCount, 0);
  });

  it('does not wait for zero, and not at all once cancelled', async () => {
    const t = new Token();
    assert.equal(await debounce(0, t), true);
    t.cancel();
    assert.equal(await debounce(50, t), false);
  });
});

describe('throttle', () => {
  it('collapses bursts into one trailing call per interval', async () => {
    let calls = 0;
    const f = throttle(() => calls++, 40);
    f();
    f();
    f();
    await sleep(10);
    assert.equal(calls, 1);
    f();
    f();
    assert.equal(calls, 1);
    await sleep(60);
    assert.equal(calls, 2);
  });

  it('can be cancelled', async () => {
    let calls = 0;
    const f = throttle(() => calls++, 10);
    f();
    f.cancel();
    await sleep(30);
    assert.equal(calls, 0);
  });
});
