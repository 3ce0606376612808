// `codehone/status` JSON -> status bar text and tooltip. Pure logic, unit-tested under plain node.

export const STATUS_METHOD = 'codehone/status';

export interface ModelInfo {
  name: string;
  architecture?: string;
  folder?: string;
  modelDir?: string;
}

export interface Latency {
  p50?: number;
  p95?: number;
  last?: number;
}

export interface StatusInfo {
  models: ModelInfo[];
  /** Short provider name: CUDA, CPU, TensorRT, ... (undefined if the server did not say). */
  provider?: string;
  /** The provider as the server named it, e.g. CUDAExecutionProvider. */
  providerRaw?: string;
  latency: Latency;
}

/** The client's side of things, which the status JSON does not carry. */
export type ClientState = 'disabled' | 'starting' | 'running' | 'stopped' | 'error';

export interface StatusBarView {
  text: string;
  tooltip: string;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Last path component, for `/a/b/model/` as well as `C:\\a\\model`. */
export function basename(p: string): string {
  const parts = p.split(/[\\/]+/).filter((s) => s.length > 0);
  return parts.length > 0 ? parts[parts.length - 1] : p;
}

/** `CUDAExecutionProvider` -> `CUDA`, `CPUExecutionProvider` -> `CPU`. */
export function shortProvider(provider: string): string {
  const known: Record<string, string> = {
    CUDAExecutionProvider: 'CUDA',
    CPUExecutionProvider: 'CPU',
    TensorrtExecutionProvider: 'TensorRT',
    ROCMExecutionProvider: 'ROCm',
    CoreMLExecutionProvider: 'CoreML',
    DmlExecutionProvider: 'DirectML',
  };
  return known[provider] ?? (provider.replace(/ExecutionProvider$/, '') || provider);
}

/** Parse the `codehone/status` result defensively: unknown fields are ignored, wrong types dropped. */
export function parseStatus(raw: unknown): StatusInfo {
  const obj = raw && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  const models: ModelInfo[] = [];
  if (Array.isArray(obj.models)) {
    for (const m of obj.models) {
      if (!m || typeof m !== 'object') continue;
      const r = m as Record<string, unknown>;
      const modelDir = str(r.model_dir);
      const architecture = str(r.architecture);
      const name = str(r.name) ?? (modelDir ? basename(modelDir) : undefined) ?? architecture ?? 'model';
      models.push({ name, architecture, folder: str(r.folder), modelDir });
    }
  }
  const providerRaw = str(obj.provider);
  const lat = obj.latency_ms && typeof obj.latency_ms === 'object'
    ? (obj.latency_ms as Record<string, unknown>)
    : {};
  return {
    models,
    provider: providerRaw ? shortProvider(providerRaw) : undefined,
    providerRaw,
    latency: { p50: num(lat.p50), p95: num(lat.p95), last: num(lat.last) },
  };
}

/** `42 ms`, `1.2 s`, `<1 ms`; `–` when unknown. */
export function formatMs(ms: number | undefined): string {
  if (ms === undefined || ms < 0) return '–';
  if (ms < 1) return '<1 ms';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

function modelLabel(models: ModelInfo[]): string {
  if (models.length === 0) return 'no model';
  const first = models[0].name;
  return models.length > 1 ? `${first} +${models.length - 1}` : first;
}

/** Status bar text (with a codicon) and a plain-text tooltip. */
export function formatStatusBar(state: ClientState, info?: StatusInfo, error?: string): StatusBarView {
  const hint = '\nClick to toggle completions.';
  switch (state) {
    case 'disabled':
      return { text: '$(circle-slash) codehone', tooltip: `codehone: completions are off.${hint}` };
    case 'starting':
      return { text: '$(sync~spin) codehone', tooltip: 'codehone: starting the server…' };
    case 'stopped':
      return { text: '$(debug-stop) codehone', tooltip: 'codehone: the server is not running.' };
    case 'error':
      return {
        text: '$(error) codehone',
        tooltip: `codehone: ${error ?? 'the server failed'}.\nRun "codehone: Show Server Log" for details.`,
      };
    case 'running':
      break;
  }
  if (!info) {
    return { text: '$(sparkle) codehone', tooltip: `codehone: running.${hint}` };
  }
  const parts = [modelLabel(info.models)];
  if (info.provider) parts.push(info.provider);
  if (info.latency.last !== undefined) parts.push(formatMs(info.latency.last));
  const lines = ['codehone: running'];
  for (const m of info.models) {
    lines.push(`model: ${m.name}${m.architecture ? ` (${m.architecture})` : ''}`);
    if (m.modelDir) lines.push(`  dir: ${m.modelDir}`);
    if (m.folder) lines.push(`  for: ${m.folder}`);
  }
  lines.push(`provider: ${info.providerRaw ?? 'unknown'}`);
  const l = info.latency;
  lines.push(`latency: last ${formatMs(l.last)}, p50 ${formatMs(l.p50)}, p95 ${formatMs(l.p95)}`);
  return { text: `$(sparkle) ${parts.join(' · ')}`, tooltip: lines.join('\n') + hint };
}
