// Debouncing for inline completion requests. VS Code cancels the previous request's token when the
// user types again, so "wait, then go on only if not cancelled" is a debounce. Pure logic.

/** The part of vscode.CancellationToken used here. */
export interface CancellationLike {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => unknown): { dispose(): unknown };
}

/**
 * Wait `ms` milliseconds. Resolves true if the wait ran out, false as soon as `token` is
 * cancelled (or at once if it already was). `ms <= 0` resolves true at once.
 */
export function debounce(ms: number, token: CancellationLike): Promise<boolean> {
  if (token.isCancellationRequested) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const sub = token.onCancellationRequested(() => {
      clearTimeout(timer);
      sub.dispose();
      resolve(false);
    });
    const timer = setTimeout(() => {
      sub.dispose();
      resolve(!token.isCancellationRequested);
    }, ms);
  });
}

/**
 * Run `fn` at most once per `intervalMs`, trailing: calls made while waiting collapse into one
 * call at the end of the interval. Used to refresh the status bar after completions.
 */
export function throttle(fn: () => void, intervalMs: number): { (): void; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last = -Infinity;
  const run = () => {
    timer = undefined;
    last = Date.now();
    fn();
  };
  const call = () => {
    if (timer !== undefined) return;
    const wait = Math.max(0, last + intervalMs - Date.now());
    timer = setTimeout(run, wait);
  };
  call.cancel = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  return call;
}
