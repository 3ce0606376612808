// `codehone.trace.server` -> LSP message tracing. Pure logic (no `vscode` import), unit-tested in
// test/trace.test.ts; extension.ts wraps the output channel with it.
//
// vscode-languageclient 11 traces only while its trace channel's log level is Trace: at any other
// level it sets the connection's trace to Off whatever `<id>.trace.server` says, and its
// `channel.trace(...)` lines would be dropped anyway. So `codehone.trace.server: "messages"` alone
// showed nothing unless the user also set the codehone channel's log level to Trace. The wrapper
// made here reports the log level as Trace while the setting asks for tracing (so the client
// turns tracing on, with the verbosity the setting names) and writes the trace lines at a level
// the real channel shows.

/** The values of `codehone.trace.server`. */
export type TraceSetting = 'off' | 'messages' | 'verbose';

/** vscode.LogLevel's numbers (Off 0, Trace 1, Debug 2, Info 3, Warning 4, Error 5). */
export const LOG_LEVEL = { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 } as const;

export function parseTraceSetting(v: unknown): TraceSetting {
  return v === 'messages' || v === 'verbose' ? v : 'off';
}

/** The log level the language client should see: Trace while the setting asks for tracing,
 *  otherwise the channel's own level (at Trace the client still traces, as it always did). */
export function traceLogLevel(channelLevel: number, setting: TraceSetting): number {
  return setting !== 'off' ? LOG_LEVEL.Trace : channelLevel;
}

/** The part of vscode.LogOutputChannel used here. */
export interface LogChannelLike {
  readonly logLevel: number;
  trace(message: string, ...args: unknown[]): void;
  info(message: string, ...args: unknown[]): void;
}

/** Write one trace line so it shows: at trace level when the channel shows those, else at info
 *  level (the line itself starts with the client's "Sending request ..." / "Received ..."). */
export function writeTrace(channel: LogChannelLike, message: string, ...args: unknown[]): void {
  if (channel.logLevel !== LOG_LEVEL.Off && channel.logLevel <= LOG_LEVEL.Trace) {
    channel.trace(message, ...args);
  } else {
    channel.info(`[LSP trace] ${message}`, ...args);
  }
}

/** A minimal event emitter with vscode.Event's shape (listener -> disposable). */
export class Emitter<T> {
  private listeners: Array<(value: T) => unknown> = [];

  readonly event = (listener: (value: T) => unknown): { dispose(): void } => {
    this.listeners.push(listener);
    return {
      dispose: () => {
        this.listeners = this.listeners.filter((l) => l !== listener);
      },
    };
  };

  fire(value: T): void {
    for (const l of [...this.listeners]) l(value);
  }

  dispose(): void {
    this.listeners = [];
  }
}

export interface TraceChannel<C> {
  /** The channel to give LanguageClientOptions.traceOutputChannel. */
  channel: C;
  /** Call when `codehone.trace.server` (or the channel's level) may have changed. */
  update(): void;
  dispose(): void;
}

/**
 * Wrap a log output channel for the language client: `logLevel` follows traceLogLevel(),
 * `onDidChangeLogLevel` fires when that level changes (the setting or the channel's own level),
 * `trace(...)` goes through writeTrace(); everything else is the channel itself.
 */
export function makeTraceChannel<C extends LogChannelLike & { onDidChangeLogLevel: (l: (level: number) => unknown) => { dispose(): unknown } }>(
  output: C,
  setting: () => TraceSetting,
): TraceChannel<C> {
  const emitter = new Emitter<number>();
  let last = traceLogLevel(output.logLevel, setting());
  const update = () => {
    const now = traceLogLevel(output.logLevel, setting());
    if (now !== last) {
      last = now;
      emitter.fire(now);
    }
  };
  const sub = output.onDidChangeLogLevel(() => update());
  const channel = new Proxy(output, {
    get(target, prop) {
      if (prop === 'logLevel') return traceLogLevel(target.logLevel, setting());
      if (prop === 'onDidChangeLogLevel') return emitter.event;
      if (prop === 'trace') return (message: string, ...args: unknown[]) => writeTrace(target, message, ...args);
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return {
    channel,
    update,
    dispose: () => {
      sub.dispose();
      emitter.dispose();
    },
  };
}
