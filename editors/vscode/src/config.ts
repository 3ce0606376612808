// Settings -> server options. Pure logic: nothing here imports `vscode`, so it is unit-tested
// under plain node (test/config.test.ts). extension.ts feeds it `WorkspaceConfiguration.inspect`.

/** The extension's settings section. */
export const SECTION = 'codehone';

/** Keys (under SECTION) whose workspace-level values are ignored in an untrusted workspace:
 *  they choose a program to run or a model to load. Mirrors package.json
 *  capabilities.untrustedWorkspaces.restrictedConfigurations. */
export const RESTRICTED_KEYS = [
  'server.command',
  'server.pythonPath',
  'model',
  'allowModelsOutsideWorkspace',
] as const;

/** Every key extension.ts reads, with its default (kept equal to package.json by a test). */
export const DEFAULTS = {
  enable: true,
  'server.command': [] as string[],
  'server.pythonPath': '',
  model: '',
  maxTokens: 64,
  debounceMs: 75,
  'server.verbose': false,
  allowModelsOutsideWorkspace: false,
} as const;

export type SettingKey = keyof typeof DEFAULTS;

/** Keys whose change needs the server restarted (they end up on its command line). */
export const RESTART_KEYS: readonly SettingKey[] = [
  'server.command',
  'server.pythonPath',
  'model',
  'server.verbose',
  'allowModelsOutsideWorkspace', // sent in initializationOptions only
];

/** The server accepts maxNewTokens in 1..512. */
export const MAX_TOKENS_RANGE = [1, 512] as const;
export const DEBOUNCE_RANGE = [0, 2000] as const;

/** The shape of `WorkspaceConfiguration.inspect(key)` that matters here. */
export interface Inspected<T = unknown> {
  defaultValue?: T;
  globalValue?: T;
  workspaceValue?: T;
  workspaceFolderValue?: T;
}

export type Inspector = (key: SettingKey) => Inspected | undefined;

export interface Settings {
  enable: boolean;
  command: string[];
  pythonPath: string;
  model: string;
  maxTokens: number;
  debounceMs: number;
  verbose: boolean;
  allowModelsOutsideWorkspace: boolean;
}

export interface ReadResult {
  settings: Settings;
  /** Restricted keys that had a workspace value which was ignored (untrusted workspace). */
  ignored: SettingKey[];
}

export function isRestricted(key: string): boolean {
  return (RESTRICTED_KEYS as readonly string[]).includes(key);
}

/**
 * The value in force for one setting: workspace folder > workspace > user (global) > default,
 * except that in an untrusted workspace a restricted key never takes a workspace value.
 * Returns the value and whether a workspace value was dropped.
 */
export function effectiveValue<T>(
  inspected: Inspected<T> | undefined,
  key: string,
  trusted: boolean,
): { value: T | undefined; ignoredWorkspaceValue: boolean } {
  if (!inspected) return { value: undefined, ignoredWorkspaceValue: false };
  const skipWorkspace = !trusted && isRestricted(key);
  const hasWorkspace =
    inspected.workspaceFolderValue !== undefined || inspected.workspaceValue !== undefined;
  if (!skipWorkspace) {
    if (inspected.workspaceFolderValue !== undefined) {
      return { value: inspected.workspaceFolderValue, ignoredWorkspaceValue: false };
    }
    if (inspected.workspaceValue !== undefined) {
      return { value: inspected.workspaceValue, ignoredWorkspaceValue: false };
    }
  }
  const value = inspected.globalValue !== undefined ? inspected.globalValue : inspected.defaultValue;
  return { value, ignoredWorkspaceValue: skipWorkspace && hasWorkspace };
}

function asBool(v: unknown, dflt: boolean): boolean {
  return typeof v === 'boolean' ? v : dflt;
}

function asString(v: unknown, dflt: string): string {
  return typeof v === 'string' ? v.trim() : dflt;
}

function asStringArray(v: unknown): string[] {
  if (typeof v === 'string') {
    // Tolerate a plain string (hand-edited settings.json): one program, no arguments.
    return v.trim() ? [v.trim()] : [];
  }
  if (!Array.isArray(v)) return [];
  return v.filter((x): x is string => typeof x === 'string' && x.length > 0);
}

function asInt(v: unknown, dflt: number, [lo, hi]: readonly [number, number]): number {
  const n = typeof v === 'number' && Number.isFinite(v) ? Math.round(v) : dflt;
  return Math.min(hi, Math.max(lo, n));
}

/** Read all settings through `inspect`, applying workspace trust, types and ranges. */
export function readSettings(inspect: Inspector, trusted: boolean): ReadResult {
  const ignored: SettingKey[] = [];
  const get = (key: SettingKey): unknown => {
    const r = effectiveValue(inspect(key), key, trusted);
    if (r.ignoredWorkspaceValue) ignored.push(key);
    return r.value === undefined ? DEFAULTS[key] : r.value;
  };
  const settings: Settings = {
    enable: asBool(get('enable'), DEFAULTS.enable),
    command: asStringArray(get('server.command')),
    pythonPath: asString(get('server.pythonPath'), DEFAULTS['server.pythonPath']),
    model: asString(get('model'), DEFAULTS.model),
    maxTokens: asInt(get('maxTokens'), DEFAULTS.maxTokens, MAX_TOKENS_RANGE),
    debounceMs: asInt(get('debounceMs'), DEFAULTS.debounceMs, DEBOUNCE_RANGE),
    verbose: asBool(get('server.verbose'), DEFAULTS['server.verbose']),
    allowModelsOutsideWorkspace: asBool(
      get('allowModelsOutsideWorkspace'),
      DEFAULTS.allowModelsOutsideWorkspace,
    ),
  };
  return { settings, ignored };
}

export interface PathContext {
  /** First workspace folder's path, if any. */
  workspaceFolder?: string;
  homeDir: string;
  env: Record<string, string | undefined>;
}

/** Expand `~`, `${userHome}`, `${workspaceFolder}` and `${env:NAME}` in a path setting. */
export function expandPath(p: string, ctx: PathContext): string {
  let out = p.replace(/\$\{(userHome|workspaceFolder|env:([A-Za-z_][A-Za-z0-9_]*))\}/g, (m, what, env) => {
    if (what === 'userHome') return ctx.homeDir;
    if (what === 'workspaceFolder') return ctx.workspaceFolder ?? m;
    return ctx.env[env] ?? '';
  });
  if (out === '~') out = ctx.homeDir;
  else if (out.startsWith('~/') || out.startsWith('~\\')) out = ctx.homeDir + out.slice(1);
  return out;
}

export interface ServerCommand {
  command: string;
  args: string[];
}

export interface CommandContext extends PathContext {
  /** Where the server should write its log (`--log-file`), if anywhere. */
  logFile?: string;
}

/**
 * The command line that starts `codehone serve` over stdio:
 * `server.command` if set, else `<pythonPath> -m codehone serve`, else `codehone serve` from PATH;
 * then `--model DIR`, `--log-file FILE` and `-v` as the settings ask.
 */
export function serverCommand(settings: Settings, ctx: CommandContext): ServerCommand {
  let argv: string[];
  if (settings.command.length > 0) {
    argv = settings.command.map((a, i) => (i === 0 ? expandPath(a, ctx) : a));
  } else if (settings.pythonPath) {
    argv = [expandPath(settings.pythonPath, ctx), '-m', 'codehone', 'serve'];
  } else {
    argv = ['codehone', 'serve'];
  }
  if (settings.model) argv.push('--model', expandPath(settings.model, ctx));
  if (ctx.logFile) argv.push('--log-file', ctx.logFile);
  if (settings.verbose) argv.push('-v');
  return { command: argv[0], args: argv.slice(1) };
}

/** What the server gets as `initializationOptions` and in `workspace/didChangeConfiguration`. */
export function serverSettings(settings: Settings): { maxNewTokens: number } {
  return { maxNewTokens: settings.maxTokens };
}

export interface InitializationOptions {
  maxNewTokens: number;
  clientDebouncesInline: true;
  trustedWorkspace: boolean;
  allowModelsOutsideWorkspace: boolean;
}

/**
 * What the server gets as `initializationOptions`: the settings, `clientDebouncesInline`, and
 * VS Code's workspace trust. `clientDebouncesInline`: the inline middleware in extension.ts
 * waits `debounceMs` before it asks, so the server (which also reads `codehone.debounceMs` from
 * the settings) does not wait on inline requests again. The server lets a project's
 * `.codehone.toml` choose the model only in a trusted workspace (a cloned repository must not
 * pick the weights that run), and one outside the project folder only with
 * `allowModelsOutsideWorkspace` too. Trust is only ever sent here, never as a setting a
 * workspace could write; granting it restarts the server (extension.ts).
 */
export function initializationOptions(settings: Settings, trusted: boolean): InitializationOptions {
  return {
    ...serverSettings(settings),
    clientDebouncesInline: true,
    trustedWorkspace: trusted,
    allowModelsOutsideWorkspace: trusted && settings.allowModelsOutsideWorkspace,
  };
}

/** True when a configuration change touches a key that needs a server restart. */
export function needsRestart(affects: (key: string) => boolean): boolean {
  return RESTART_KEYS.some((k) => affects(`${SECTION}.${k}`));
}

/** Quote an argv for display in the log (not for a shell). */
export function displayCommand(cmd: ServerCommand): string {
  return [cmd.command, ...cmd.args].map((a) => (/[\s"']/.test(a) ? JSON.stringify(a) : a)).join(' ');
}

/** Command ids (kept equal to package.json contributes.commands by a test). */
export const COMMANDS = {
  restart: 'codehone.restartServer',
  showLog: 'codehone.showLog',
  toggle: 'codehone.toggleCompletions',
} as const;
