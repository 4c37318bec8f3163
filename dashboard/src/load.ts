import { useCallback, useEffect, useState } from 'preact/hooks';

export type Loaded<T> = { state: 'loading' } | { state: 'ok'; value: T } | { state: 'error'; error: unknown };

/** `load()` on mount and whenever `deps` change; `reload` runs it again, keeping what is shown. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): [Loaded<T>, () => Promise<void>] {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: 'loading' });
  const run = useCallback(async () => {
    try {
      setLoaded({ state: 'ok', value: await load() });
    } catch (error) {
      setLoaded({ state: 'error', error });
    }
  }, deps);
  useEffect(() => {
    setLoaded({ state: 'loading' });
    void run();
  }, [run]);
  return [loaded, run];
}
