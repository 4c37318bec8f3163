import { useEffect, useRef, useState } from 'preact/hooks';
import { Api, ApiError } from './api';
import { describe } from './errors';
import { MessagePanel } from './panel';
import { Messages } from './messages';
import { Policy } from './policy';
import { href, useRoute } from './route';
import { session } from './session';

export function App() {
  const [key, setKey] = useState(session.get);
  const signOut = () => {
    session.clear();
    setKey(null);
  };
  if (!key) return <SignIn onSignedIn={(k) => (session.set(k), setKey(k))} />;
  return <Shell api={new Api(key)} onSignOut={signOut} />;
}

function Shell({ api, onSignOut }: { api: Api; onSignOut: () => void }) {
  const route = useRoute();
  const main = useRef<HTMLElement>(null);
  // A new screen: move focus to it, so keyboard and screen-reader users start at its heading.
  useEffect(() => main.current?.focus(), [route.page, 'id' in route ? route.id : '']);
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), main.current?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href={href.messages()}>
          retarget
        </a>
        <nav aria-label="Main">
          <a href={href.messages()} aria-current={route.page !== 'policy' ? 'page' : undefined}>
            Messages
          </a>
          <a href={href.policy()} aria-current={route.page === 'policy' ? 'page' : undefined}>
            Delivery policy
          </a>
        </nav>
        <button type="button" class="secondary" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {route.page === 'messages' && <Messages api={api} cursor={route.cursor} onUnauthorized={onSignOut} />}
        {route.page === 'message' && <MessagePanel key={route.id} api={api} id={route.id} />}
        {route.page === 'policy' && <Policy api={api} />}
      </main>
    </>
  );
}

function SignIn({ onSignedIn }: { onSignedIn: (key: string) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const k = key.trim();
    if (!k) return setError('Enter the API key of an app.');
    setBusy(true);
    setError(null);
    try {
      // The cheapest authenticated read: it proves the key without changing anything.
      await new Api(k).policy();
      onSignedIn(k);
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'This API key was not accepted. Check it and try again.' : describe(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <h1>retarget</h1>
      <form onSubmit={submit} aria-describedby="signin-note">
        <label for="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autoComplete="off"
          spellcheck={false}
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? 'signin-error' : undefined}
          required
        />
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {error && (
          <p id="signin-error" class="error" role="alert">
            {error}
          </p>
        )}
        <p id="signin-note" class="note">
          The key is kept in this tab only (session storage) and sent only to this API. Closing the tab or signing out forgets it.
        </p>
      </form>
    </main>
  );
}
