import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export type Loaded<T> = { state: 'loading' } | { state: 'ok'; value: T } | { state: 'error'; error: unknown };

/** Whether the screen that asked still wants the answer (false once unmounted or re-asked). */
export type Live = { current: boolean };

/**
 * `load(live)` on mount and whenever `deps` change; `reload` runs it again, keeping what is
 * shown. An answer that comes after the screen went away, or after newer deps, is dropped, and
 * `live` lets a long load (the panel's counts) stop asking.
 */
export function useLoad<T>(load: (live: Live) => Promise<T>, deps: unknown[]): [Loaded<T>, () => Promise<void>] {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: 'loading' });
  const live = useRef<Live>({ current: true });
  const run = useCallback(async () => {
    const mine = live.current;
    try {
      const value = await load(mine);
      if (mine.current) setLoaded({ state: 'ok', value });
    } catch (error) {
      if (mine.current) setLoaded({ state: 'error', error });
    }
  }, deps);
  useEffect(() => {
    live.current = { current: true };
    setLoaded({ state: 'loading' });
    void run();
    return () => {
      live.current.current = false;
    };
  }, [run]);
  return [loaded, run];
}
