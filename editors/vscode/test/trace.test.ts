// codehone.trace.server -> what vscode-languageclient 11 sees (trace.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Emitter, LOG_LEVEL, makeTraceChannel, parseTraceSetting, traceLogLevel, type TraceSetting, writeTrace } from '../src/trace';

function channel(level: number = LOG_LEVEL.Info) {
  const lines: string[] = [];
  const changed = new Emitter<number>();
  const ch = {
    logLevel: level,
    onDidChangeLogLevel: changed.event,
    trace: (m: string) => lines.push(`trace ${m}`),
    info: (m: string) => lines.push(`info ${m}`),
    name: 'codehone',
    show(this: { name: string }) {
      return this.name;
    },
  };
  return { ch, lines, changed };
}

describe('trace setting', () => {
  it('parses the three values, anything else is off', () => {
    assert.equal(parseTraceSetting('messages'), 'messages');
    assert.equal(parseTraceSetting('verbose'), 'verbose');
    for (const v of ['off', undefined, 'Messages', 3, null]) assert.equal(parseTraceSetting(v), 'off');
  });

  it('reports Trace to the client while the setting asks for tracing', () => {
    assert.equal(traceLogLevel(LOG_LEVEL.Info, 'messages'), LOG_LEVEL.Trace);
    assert.equal(traceLogLevel(LOG_LEVEL.Error, 'verbose'), LOG_LEVEL.Trace);
    assert.equal(traceLogLevel(LOG_LEVEL.Info, 'off'), LOG_LEVEL.Info);
    assert.equal(traceLogLevel(LOG_LEVEL.Trace, 'off'), LOG_LEVEL.Trace, 'a channel at Trace still traces');
  });

  it('writes trace lines at a level the channel shows', () => {
    const a = channel(LOG_LEVEL.Info);
    writeTrace(a.ch, "Sending request 'initialize - (0)'.");
    assert.deepEqual(a.lines, ["info [LSP trace] Sending request 'initialize - (0)'."]);
    const b = channel(LOG_LEVEL.Trace);
    writeTrace(b.ch, 'x');
    assert.deepEqual(b.lines, ['trace x']);
  });
});

describe('makeTraceChannel', () => {
  it('wraps the channel: level, event and trace are its own, the rest passes through', () => {
    let setting: TraceSetting = 'off';
    const { ch, lines, changed } = channel(LOG_LEVEL.Info);
    const t = makeTraceChannel(ch, () => setting);
    const seen: number[] = [];
    t.channel.onDidChangeLogLevel((l) => seen.push(l));
    assert.equal(t.channel.logLevel, LOG_LEVEL.Info);
    assert.equal(t.channel.show(), 'codehone', 'methods are bound to the real channel');

    setting = 'messages';
    assert.equal(t.channel.logLevel, LOG_LEVEL.Trace);
    t.update();
    t.update(); // no change: no second event
    assert.deepEqual(seen, [LOG_LEVEL.Trace]);
    t.channel.trace('Received response');
    assert.deepEqual(lines, ['info [LSP trace] Received response']);

    setting = 'off';
    t.update();
    assert.deepEqual(seen, [LOG_LEVEL.Trace, LOG_LEVEL.Info]);

    ch.logLevel = LOG_LEVEL.Trace; // the user sets the channel's level
    changed.fire(LOG_LEVEL.Trace);
    assert.deepEqual(seen, [LOG_LEVEL.Trace, LOG_LEVEL.Info, LOG_LEVEL.Trace]);
    t.dispose();
  });
});
