// Hash routes, so that the function serving the page needs one file per asset and no fallback.
import { useEffect, useState } from 'preact/hooks';

export type Route = { page: 'messages'; cursor: string | null } | { page: 'message'; id: string } | { page: 'policy' };

export function parse(hash: string): Route {
  const path = hash.replace(/^#/, '');
  const m = /^\/messages\/([^/?]+)$/.exec(path);
  if (m) return { page: 'message', id: decodeURIComponent(m[1]!) };
  if (path === '/policy') return { page: 'policy' };
  const c = /^\/messages\?cursor=(.+)$/.exec(path);
  return { page: 'messages', cursor: c ? decodeURIComponent(c[1]!) : null };
}

export const href = {
  messages: (cursor: string | null = null) => (cursor ? `#/messages?cursor=${encodeURIComponent(cursor)}` : '#/'),
  message: (id: string) => `#/messages/${encodeURIComponent(id)}`,
  policy: () => '#/policy',
};

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}
