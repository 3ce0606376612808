// The VS Code side: wires settings, the language client, the status bar and the commands
// together. The logic lives in config.ts, status.ts and debounce.ts (unit-tested without VS Code).

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
} from 'vscode-languageclient/node';

import {
  COMMANDS,
  displayCommand,
  initializationOptions,
  needsRestart,
  readSettings,
  SECTION,
  serverCommand,
  serverSettings,
  type SettingKey,
  type Settings,
} from './config';
import { debounce, throttle } from './debounce';
import { type ClientState, formatStatusBar, parseStatus, STATUS_METHOD, type StatusInfo } from './status';
import { makeTraceChannel, parseTraceSetting, type TraceChannel } from './trace';

const STATUS_POLL_MS = 10_000;

class Controller implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private settings: Settings;
  private state: ClientState = 'stopped';
  private info: StatusInfo | undefined;
  private error: string | undefined;
  private warnedUntrusted = false;
  private poll: ReturnType<typeof setInterval> | undefined;
  private readonly output: vscode.LogOutputChannel;
  /** The output channel as the language client's trace channel: see trace.ts. */
  private readonly trace: TraceChannel<vscode.LogOutputChannel>;
  private readonly item: vscode.StatusBarItem;
  private readonly logFile: string | undefined;
  private readonly refreshSoon = throttle(() => void this.refreshStatus(), 1000);

  constructor(private readonly context: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel('codehone', { log: true });
    this.trace = makeTraceChannel(this.output, () =>
      parseTraceSetting(vscode.workspace.getConfiguration(SECTION).get('trace.server')),
    );
    this.item = vscode.window.createStatusBarItem('codehone.status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'codehone';
    this.item.command = COMMANDS.toggle;
    this.logFile = this.prepareLogFile();
    this.settings = this.read();
    this.render();
    this.item.show();
  }

  private prepareLogFile(): string | undefined {
    try {
      const dir = this.context.logUri.fsPath;
      fs.mkdirSync(dir, { recursive: true });
      return path.join(dir, 'server.log');
    } catch {
      return undefined;
    }
  }

  private read(): Settings {
    const cfg = vscode.workspace.getConfiguration(SECTION);
    const { settings, ignored } = readSettings((key: SettingKey) => cfg.inspect(key), vscode.workspace.isTrusted);
    if (ignored.length > 0 && !this.warnedUntrusted) {
      this.warnedUntrusted = true;
      const keys = ignored.map((k) => `${SECTION}.${k}`).join(', ');
      this.output.warn(`Untrusted workspace: ignoring workspace values of ${keys}.`);
      void vscode.window.showWarningMessage(
        `codehone: this workspace is not trusted, so its settings ${keys} are ignored; your user settings apply.`,
      );
    }
    return settings;
  }

  private render(): void {
    const view = formatStatusBar(this.state, this.info, this.error);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
  }

  private setState(state: ClientState, error?: string): void {
    this.state = state;
    this.error = error;
    if (state !== 'running') this.info = undefined;
    this.render();
  }

  async start(): Promise<void> {
    if (this.client) return;
    if (!this.settings.enable) {
      this.setState('disabled');
      return;
    }
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const cmd = serverCommand(this.settings, {
      workspaceFolder: folder,
      homeDir: os.homedir(),
      env: process.env,
      logFile: this.logFile,
    });
    this.output.info(`Starting: ${displayCommand(cmd)}`);
    // No `transport`: with TransportKind.stdio vscode-languageclient appends `--stdio` to the
    // arguments. Without one it still speaks over the process's stdin/stdout.
    const serverOptions: ServerOptions = {
      command: cmd.command,
      args: cmd.args,
      options: { cwd: folder ?? os.homedir(), env: process.env },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
      outputChannel: this.output,
      traceOutputChannel: this.trace.channel,
      initializationOptions: () => initializationOptions(this.settings, vscode.workspace.isTrusted),
      middleware: {
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          if (!this.settings.enable) return null;
          if (
            context.triggerKind === vscode.InlineCompletionTriggerKind.Automatic &&
            !(await debounce(this.settings.debounceMs, token))
          ) {
            return null;
          }
          const result = await next(document, position, context, token);
          this.refreshSoon();
          return result;
        },
        provideCompletionItem: async (document, position, context, token, next) => {
          if (!this.settings.enable) return null;
          const result = await next(document, position, context, token);
          this.refreshSoon();
          return result;
        },
      },
    };
    const client = new LanguageClient('codehone', 'codehone', serverOptions, clientOptions);
    this.client = client;
    client.onDidChangeState((e) => {
      if (this.client !== client) return;
      if (e.newState === State.Running) {
        this.setState('running');
        void this.refreshStatus();
      } else if (e.newState === State.Starting) {
        this.setState('starting');
      } else if (this.state !== 'error') {
        this.setState('stopped');
      }
    });
    this.setState('starting');
    try {
      await client.start();
      this.startPolling();
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      this.output.error(`The server did not start: ${msg}`);
      this.setState('error', `the server did not start (${displayCommand(cmd)})`);
      if (this.client === client) this.client = undefined;
      await client.dispose().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    this.stopPolling();
    this.refreshSoon.cancel();
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        await client.stop(5000);
      } catch (err) {
        this.output.warn(`Stopping the server: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    this.setState(this.settings.enable ? 'stopped' : 'disabled');
  }

  async restart(): Promise<void> {
    await this.stop();
    this.settings = this.read();
    await this.start();
  }

  private startPolling(): void {
    this.stopPolling();
    this.poll = setInterval(() => void this.refreshStatus(), STATUS_POLL_MS);
  }

  private stopPolling(): void {
    if (this.poll !== undefined) clearInterval(this.poll);
    this.poll = undefined;
  }

  async refreshStatus(): Promise<void> {
    const client = this.client;
    if (!client || client.state !== State.Running) return;
    try {
      const raw = await client.sendRequest(STATUS_METHOD, {});
      if (this.client !== client) return;
      this.info = parseStatus(raw);
    } catch (err) {
      this.output.debug(`${STATUS_METHOD} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.render();
  }

  async onConfigurationChanged(e: vscode.ConfigurationChangeEvent): Promise<void> {
    if (!e.affectsConfiguration(SECTION)) return;
    if (e.affectsConfiguration(`${SECTION}.trace.server`)) this.trace.update();
    const before = this.settings;
    this.settings = this.read();
    if (before.enable !== this.settings.enable) {
      if (this.settings.enable) await this.start();
      else await this.stop();
      return;
    }
    if (needsRestart((k) => e.affectsConfiguration(k))) {
      if (this.client) await this.restart();
      return;
    }
    if (before.maxTokens !== this.settings.maxTokens && this.client?.state === State.Running) {
      await this.client.sendNotification(DidChangeConfigurationNotification.type, {
        settings: { [SECTION]: serverSettings(this.settings) },
      });
    }
  }

  async toggle(): Promise<void> {
    const cfg = vscode.workspace.getConfiguration(SECTION);
    const target =
      cfg.inspect('enable')?.workspaceValue !== undefined
        ? vscode.ConfigurationTarget.Workspace
        : vscode.ConfigurationTarget.Global;
    await cfg.update('enable', !this.settings.enable, target);
    // onDidChangeConfiguration starts or stops the server.
  }

  async showLog(): Promise<void> {
    this.output.show(true);
    if (this.logFile && fs.existsSync(this.logFile)) {
      await vscode.window.showTextDocument(vscode.Uri.file(this.logFile), { preview: true });
    }
  }

  dispose(): void {
    void this.stop();
    this.item.dispose();
    this.trace.dispose();
    this.output.dispose();
  }
}

let controller: Controller | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const c = new Controller(context);
  controller = c;
  context.subscriptions.push(
    c,
    vscode.commands.registerCommand(COMMANDS.restart, () => c.restart()),
    vscode.commands.registerCommand(COMMANDS.showLog, () => c.showLog()),
    vscode.commands.registerCommand(COMMANDS.toggle, () => c.toggle()),
    vscode.workspace.onDidChangeConfiguration((e) => c.onConfigurationChanged(e)),
    vscode.workspace.onDidGrantWorkspaceTrust(() => c.restart()),
  );
  void c.start();
}

export async function deactivate(): Promise<void> {
  const c = controller;
  controller = undefined;
  if (c) await c.stop();
}
