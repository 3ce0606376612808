// A small stand-in for the `vscode` module: just enough of the API for the bundled extension
// (dist/extension.js) and vscode-languageclient to activate, start the real server, sync a
// document and ask for completions, under plain node. Anything it lacks throws when used.
import * as path from 'node:path';

type Listener<T> = (e: T) => unknown;

/** An opaque stand-in for any API value the fake does not model (enum members, classes that
 *  are only constructed on code paths the tests do not take). */
export function autoStub(name: string): unknown {
  const target = function () {} as unknown as Record<string | symbol, unknown>;
  return new Proxy(target, {
    get(t, prop) {
      if (prop in t) return t[prop];
      if (prop === Symbol.toPrimitive) return () => name;
      return autoStub(`${name}.${String(prop)}`);
    },
  });
}

export class Disposable {
  static from(...items: Array<{ dispose(): unknown }>): Disposable {
    return new Disposable(() => items.forEach((i) => i.dispose()));
  }
  constructor(private readonly fn: () => unknown = () => undefined) {}
  dispose(): void {
    this.fn();
  }
}

export class EventEmitter<T> {
  private listeners: Array<Listener<T>> = [];
  event = (listener: Listener<T>): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => (this.listeners = this.listeners.filter((l) => l !== listener)));
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) l(e);
  }
  dispose(): void {
    this.listeners = [];
  }
}

const noEvent = (): Disposable => new Disposable();

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly fsPath: string,
  ) {}
  static file(p: string): Uri {
    return new Uri('file', path.resolve(p));
  }
  static parse(s: string): Uri {
    if (s.startsWith('file://')) return new Uri('file', decodeURIComponent(s.slice('file://'.length)));
    const i = s.indexOf(':');
    return new Uri(s.slice(0, i), s.slice(i + 1));
  }
  get path(): string {
    return this.fsPath;
  }
  toString(): string {
    return this.scheme === 'file' ? `file://${encodeURI(this.fsPath)}` : `${this.scheme}:${this.fsPath}`;
  }
  toJSON(): unknown {
    return { scheme: this.scheme, path: this.fsPath };
  }
  with(): Uri {
    return this;
  }
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    if (typeof a === 'number') {
      this.start = new Position(a, b as number);
      this.end = new Position(c as number, d as number);
    } else {
      this.start = a;
      this.end = b as Position;
    }
  }
}

export class SnippetString {
  constructor(readonly value: string) {}
}

export class InlineCompletionItem {
  constructor(
    readonly insertText: string | SnippetString,
    readonly range?: Range,
    readonly command?: unknown,
  ) {}
}

export class InlineCompletionList {
  constructor(readonly items: InlineCompletionItem[]) {}
}

export class CompletionItem {
  [key: string]: unknown;
  constructor(readonly label: unknown) {}
}

export class CompletionList {
  constructor(
    readonly items: CompletionItem[] = [],
    readonly isIncomplete = false,
  ) {}
}

export class MarkdownString {
  constructor(readonly value = '') {}
  appendText(v: string): this {
    (this as { value: string }).value += v;
    return this;
  }
  appendMarkdown(v: string): this {
    return this.appendText(v);
  }
}

export class TextEdit {
  constructor(
    readonly range: Range,
    readonly newText: string,
  ) {}
}

export class CancellationError extends Error {}

export class CancellationTokenSource {
  private emitter = new EventEmitter<void>();
  token = {
    isCancellationRequested: false,
    onCancellationRequested: this.emitter.event,
  };
  cancel(): void {
    if (!this.token.isCancellationRequested) {
      this.token.isCancellationRequested = true;
      this.emitter.fire();
    }
  }
  dispose(): void {
    this.emitter.dispose();
  }
}

// Base classes vscode-languageclient extends at load time; the tests do not use them.
class Plain {
  constructor(..._args: unknown[]) {}
}
export class CallHierarchyItem extends Plain {}
export class CodeLens extends Plain {}
export class DocumentLink extends Plain {}
export class InlayHint extends Plain {}
export class SymbolInformation extends Plain {}
export class TypeHierarchyItem extends Plain {}
export class CodeAction extends Plain {}
export class Diagnostic extends Plain {}

export class TabInputText {}
export class TabInputTextDiff {}
export class TabInputNotebook {}
export class TabInputCustom {}

export const version = '1.95.0';
export const StatusBarAlignment = { Left: 1, Right: 2 };
export const ConfigurationTarget = { Global: 1, Workspace: 2, WorkspaceFolder: 3 };
export const InlineCompletionTriggerKind = { Invoke: 0, Automatic: 1 };
export const CompletionTriggerKind = { Invoke: 0, TriggerCharacter: 1, TriggerForIncompleteCompletions: 2 };
export const CompletionItemKind: Record<string, number> = new Proxy({}, { get: () => 0 });
export const CompletionItemTag = { Deprecated: 1 };
export const LogLevel = { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 };
export const ProgressLocation = { SourceControl: 1, Window: 10, Notification: 15 };
export const NotebookCellKind = { Markup: 1, Code: 2 };
export const DiagnosticSeverity = { Error: 0, Warning: 1, Information: 2, Hint: 3 };
export const env = { language: 'en', appName: 'fake-vscode', machineId: 'test', openExternal: async () => true };

// ---- state the tests look at ----------------------------------------------------------------

/** settings: key (without "codehone.") -> {globalValue, workspaceValue}. */
export const settings: Record<string, { globalValue?: unknown; workspaceValue?: unknown }> = {};
export const commandHandlers = new Map<string, (...args: unknown[]) => unknown>();
export const statusItems: Array<{ text: string; tooltip: unknown; command: unknown; visible: boolean }> = [];
export const messages: string[] = [];
export const logLines: string[] = [];
export const providers: Record<string, unknown[]> = {};
export const documentOpened = new EventEmitter<unknown>();
export const configurationChanged = new EventEmitter<{ affectsConfiguration(s: string): boolean }>();
export const trustGranted = new EventEmitter<void>();
export const openDocuments: unknown[] = [];
export const state = { trusted: true, workspaceFolders: undefined as unknown };

function section(name: string | undefined) {
  const prefix = name ? `${name}.` : '';
  return {
    get<T>(key: string, dflt?: T): T | undefined {
      const s = settings[prefix + key];
      const v = s?.workspaceValue ?? s?.globalValue;
      return (v as T | undefined) ?? dflt;
    },
    has(key: string): boolean {
      return prefix + key in settings;
    },
    inspect(key: string) {
      const s = settings[prefix + key] ?? {};
      return { key: prefix + key, globalValue: s.globalValue, workspaceValue: s.workspaceValue };
    },
    async update(key: string, value: unknown, target: number): Promise<void> {
      const s = (settings[prefix + key] ??= {});
      if (target === ConfigurationTarget.Global) s.globalValue = value;
      else s.workspaceValue = value;
      configurationChanged.fire({ affectsConfiguration: (k: string) => (prefix + key).startsWith(k) });
    },
  };
}

function logChannel(name: string) {
  const log = (level: string) => (msg: string) => logLines.push(`[${name}] ${level} ${msg}`);
  return {
    name,
    logLevel: LogLevel.Info,
    onDidChangeLogLevel: noEvent,
    trace: log('trace'),
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: (m: unknown) => log('error')(String(m)),
    append: log('out'),
    appendLine: log('out'),
    replace: log('out'),
    clear: () => undefined,
    show: () => undefined,
    hide: () => undefined,
    dispose: () => undefined,
  };
}

export const workspace = {
  get isTrusted() {
    return state.trusted;
  },
  get workspaceFolders() {
    return state.workspaceFolders;
  },
  textDocuments: openDocuments,
  notebookDocuments: [],
  getConfiguration: section,
  getWorkspaceFolder: () => undefined,
  onDidChangeConfiguration: configurationChanged.event,
  onDidGrantWorkspaceTrust: trustGranted.event,
  onDidOpenTextDocument: documentOpened.event,
  onDidCloseTextDocument: noEvent,
  onDidChangeTextDocument: noEvent,
  onDidSaveTextDocument: noEvent,
  onWillSaveTextDocument: noEvent,
  onDidChangeWorkspaceFolders: noEvent,
  onDidOpenNotebookDocument: noEvent,
  onDidCloseNotebookDocument: noEvent,
  onDidChangeNotebookDocument: noEvent,
  onDidSaveNotebookDocument: noEvent,
  createFileSystemWatcher: () => ({ onDidCreate: noEvent, onDidChange: noEvent, onDidDelete: noEvent, dispose() {} }),
  registerTextDocumentContentProvider: () => new Disposable(),
  applyEdit: async () => true,
};

export const window = {
  activeTextEditor: undefined,
  visibleTextEditors: [],
  tabGroups: { all: [], onDidChangeTabs: noEvent, onDidChangeTabGroups: noEvent },
  onDidChangeVisibleTextEditors: noEvent,
  onDidChangeActiveTextEditor: noEvent,
  createOutputChannel: (name: string) => logChannel(name),
  createStatusBarItem: () => {
    const item = {
      text: '',
      tooltip: undefined as unknown,
      command: undefined as unknown,
      name: '',
      visible: false,
      show() {
        item.visible = true;
      },
      hide() {
        item.visible = false;
      },
      dispose() {},
    };
    statusItems.push(item);
    return item;
  },
  showWarningMessage: async (m: string) => void messages.push(`warning: ${m}`),
  showErrorMessage: async (m: string) => void messages.push(`error: ${m}`),
  showInformationMessage: async (m: string) => void messages.push(`info: ${m}`),
  showTextDocument: async () => undefined,
  withProgress: async (_o: unknown, task: (p: unknown, t: unknown) => unknown) =>
    task({ report() {} }, new CancellationTokenSource().token),
};

export const commands = {
  registerCommand(id: string, handler: (...args: unknown[]) => unknown): Disposable {
    commandHandlers.set(id, handler);
    return new Disposable(() => commandHandlers.delete(id));
  },
  executeCommand: async (id: string, ...args: unknown[]) => commandHandlers.get(id)?.(...args),
};

// Every languages.register*Provider records its provider; match() says every selector matches.
export const languages: Record<string, unknown> = new Proxy(
  {
    match: () => 10,
    createDiagnosticCollection: () => ({ set() {}, delete() {}, clear() {}, dispose() {} }),
  } as Record<string, unknown>,
  {
    get(target, prop: string) {
      if (prop in target) return target[prop];
      if (prop.startsWith('register')) {
        return (_selector: unknown, provider: unknown) => {
          (providers[prop] ??= []).push(provider);
          return new Disposable();
        };
      }
      return undefined;
    },
  },
);
