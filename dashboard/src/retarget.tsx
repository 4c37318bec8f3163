import { useEffect, useState } from 'preact/hooks';
import { Action, Api, Audience, Channel, CreateRetarget, EventKind, Message, Retarget } from './api';
import { describe } from './errors';
import { fromLocalInput, localTime, num, toLocalInput } from './format';
import { ACTION_LABELS, actionsOf, kindsOf } from './funnel';
import { useLoad } from './load';
import { ChannelSelect, KindPicker } from './panel';
import { href } from './route';

type Mode = 'action' | 'combined';

export function RetargetForm({ api, m, onCreated }: { api: Api; m: Message; onCreated: () => void }) {
  const actions = actionsOf(m.channel);
  const [mode, setMode] = useState<Mode>('action');
  const [action, setAction] = useState<Action>('not_clicked');
  const [did, setDid] = useState<EventKind[]>(['delivered']);
  const [didNot, setDidNot] = useState<EventKind[]>(['clicked']);
  const [channel, setChannel] = useState<Channel>(m.channel);
  const [title, setTitle] = useState('');
  const [body, setBody] = useState('');
  const [url, setUrl] = useState('');
  const [html, setHtml] = useState('');
  const [when, setWhen] = useState<'now' | 'at'>('now');
  const [at, setAt] = useState(() => toLocalInput(new Date(Date.now() + 3600_000)));
  const [transactional, setTransactional] = useState(false);
  const [reviewing, setReviewing] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [created, setCreated] = useState<string | null>(null);

  const audience: Audience = mode === 'action' ? { action, channel } : { did, did_not: didNot, channel };
  const audienceKey = JSON.stringify(audience);
  const [count, setCount] = useState<{ count: number; unreachable: number } | null>(null);
  const [countError, setCountError] = useState<unknown>(null);
  // The live count: asked again (debounced) whenever the audience changes.
  useEffect(() => {
    setCount(null);
    setCountError(null);
    if (mode === 'combined' && did.length === 0 && didNot.length === 0) return;
    let live = true;
    const t = setTimeout(async () => {
      try {
        const c = await api.count(m.message_id, audience);
        if (live) setCount(c);
      } catch (e) {
        if (live) setCountError(e);
      }
    }, 250);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [audienceKey]);

  const sendAt = when === 'at' ? fromLocalInput(at) : null;
  const email = channel === 'email';

  const request = (): CreateRetarget => {
    const contents = email ? { title, body, ...(html.trim() ? { html } : {}) } : { ...(title.trim() ? { title } : {}), body, ...(url.trim() ? { url } : {}) };
    const who = mode === 'action' ? { action } : { did, did_not: didNot };
    return { source_message_id: m.message_id, channel, contents, transactional, ...(sendAt ? { send_at: sendAt } : {}), ...who };
  };

  const review = (e: Event) => {
    e.preventDefault();
    setError(null);
    setCreated(null);
    if (when === 'at' && !sendAt) return setError('Pick a date and time to send at.');
    if (mode === 'combined' && did.length === 0 && didNot.length === 0) return setError('Pick at least one kind under Did or Did not.');
    setReviewing(true);
  };

  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      const r = await api.createRetarget(request());
      setCreated(r.retarget_id);
      setReviewing(false);
      onCreated();
    } catch (e) {
      setError(describe(e));
      setReviewing(false);
    } finally {
      setBusy(false);
    }
  };

  const who = mode === 'action' ? ACTION_LABELS[action].toLowerCase() : `did ${did.join(', ') || '—'}, did not ${didNot.join(', ') || '—'}`;
  return (
    <section aria-labelledby="retarget-title">
      <h2 id="retarget-title">Retarget</h2>
      <form onSubmit={review} class="retarget">
        <fieldset>
          <legend>Audience</legend>
          <div class="row">
            <label>
              <input type="radio" name="mode" checked={mode === 'action'} onChange={() => setMode('action')} /> By action
            </label>
            <label>
              <input type="radio" name="mode" checked={mode === 'combined'} onChange={() => setMode('combined')} /> Did / did not
            </label>
          </div>
          {mode === 'action' ? (
            <div class="field">
              <label for="rt-action">Action</label>
              <select id="rt-action" value={action} onChange={(e) => setAction(e.currentTarget.value as Action)}>
                {actions.map((a) => (
                  <option key={a} value={a}>
                    {ACTION_LABELS[a]}
                  </option>
                ))}
              </select>
            </div>
          ) : (
            <div class="row">
              <KindPicker legend="Did" kinds={kindsOf(m.channel)} value={did} onChange={setDid} name="rt-did" />
              <KindPicker legend="Did not" kinds={kindsOf(m.channel)} value={didNot} onChange={setDidNot} name="rt-did-not" />
            </div>
          )}
          <ChannelSelect id="rt-channel" label="Send on" value={channel} onChange={setChannel} />
          <p class="count" aria-live="polite" data-testid="live-count">
            {countError ? (
              <span class="error">{describe(countError)}</span>
            ) : count ? (
              <>
                Audience now: <strong>{num(count.count)}</strong> {count.count === 1 ? 'subscription' : 'subscriptions'}
                {channel !== m.channel && <>, {num(count.unreachable)} unreachable on {channel}</>}
              </>
            ) : (
              'Counting…'
            )}
          </p>
        </fieldset>

        <fieldset>
          <legend>Contents</legend>
          <div class="field">
            <label for="rt-title">{email ? 'Subject' : 'Title (optional)'}</label>
            <input id="rt-title" value={title} onInput={(e) => setTitle(e.currentTarget.value)} required={email} maxLength={998} />
          </div>
          <div class="field">
            <label for="rt-body">{email ? 'Text part' : 'Body'}</label>
            <textarea id="rt-body" value={body} onInput={(e) => setBody(e.currentTarget.value)} required rows={3} />
          </div>
          {email ? (
            <div class="field">
              <label for="rt-html">HTML part (optional)</label>
              <textarea id="rt-html" value={html} onInput={(e) => setHtml(e.currentTarget.value)} rows={4} class="mono" />
            </div>
          ) : (
            <div class="field">
              <label for="rt-url">Link (optional)</label>
              <input id="rt-url" type="url" value={url} onInput={(e) => setUrl(e.currentTarget.value)} placeholder="https://example.com/offer" />
            </div>
          )}
        </fieldset>

        <fieldset>
          <legend>When</legend>
          <div class="row">
            <label>
              <input type="radio" name="when" checked={when === 'now'} onChange={() => setWhen('now')} /> Now
            </label>
            <label>
              <input type="radio" name="when" checked={when === 'at'} onChange={() => setWhen('at')} /> At a time
            </label>
          </div>
          {when === 'at' && (
            <div class="field">
              <label for="rt-at">Send at (your local time)</label>
              <input id="rt-at" type="datetime-local" value={at} onInput={(e) => setAt(e.currentTarget.value)} aria-describedby="rt-at-utc" />
              <p id="rt-at-utc" class="note">
                {sendAt ? `Sent to the API as ${sendAt} (UTC).` : 'Not a valid time yet.'} Up to 30 days after the message was created.
              </p>
            </div>
          )}
          <label>
            <input type="checkbox" checked={transactional} onChange={(e) => setTransactional(e.currentTarget.checked)} /> Transactional (ignores quiet hours and the
            frequency cap, and does not count toward it)
          </label>
        </fieldset>

        {!reviewing && <button type="submit">Review retarget</button>}
        {reviewing && (
          <div class="confirm" role="group" aria-labelledby="confirm-text">
            <p id="confirm-text">
              Send to the subscriptions that {mode === 'action' ? <>are <strong>{who}</strong></> : <strong>{who}</strong>} on {channel}
              {count ? (
                <>
                  : <strong>{num(count.count)}</strong> right now
                </>
              ) : null}
              , {sendAt ? `at ${localTime(sendAt)}` : 'now'}
              {transactional ? ', transactional' : ''}? The audience is computed again when it is sent.
            </p>
            <button type="button" onClick={confirm} disabled={busy}>
              {busy ? 'Creating…' : 'Confirm retarget'}
            </button>{' '}
            <button type="button" class="secondary" onClick={() => setReviewing(false)}>
              Change
            </button>
          </div>
        )}
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {created && (
          <p class="ok" role="status">
            Retarget {created} created.
          </p>
        )}
      </form>
    </section>
  );
}

/**
 * How soon to ask again about a message's retargets: 1.5 s while one is dispatching, 3 s while
 * one is due within two minutes (or overdue: the scheduler ticks every minute), 30 s while the
 * scheduled ones are further out, never once none can change.
 */
export function refreshInterval(retargets: Pick<Retarget, 'status' | 'send_at'>[], now: number): number | null {
  if (retargets.some((r) => r.status === 'dispatching')) return 1500;
  const waiting = retargets.filter((r) => r.status === 'scheduled');
  if (waiting.length === 0) return null;
  return waiting.some((r) => Date.parse(r.send_at) - now < 120_000) ? 3000 : 30_000;
}

export function Retargets({ api, messageId, version }: { api: Api; messageId: string; version: number }) {
  const [list, reload] = useLoad(() => api.retargets(messageId), [api.key, messageId, version]);
  const [error, setError] = useState<string | null>(null);
  const retargets = list.state === 'ok' ? list.value.retargets : [];
  const dispatching = retargets.some((r) => r.status === 'dispatching');
  const scheduled = retargets.some((r) => r.status === 'scheduled');
  // Follow progress: often while one is dispatching or about to be, rarely while one waits.
  useEffect(() => {
    const every = refreshInterval(retargets, Date.now());
    if (every === null) return;
    const t = setTimeout(() => void reload(), every);
    return () => clearTimeout(t);
  }, [list]);
  const cancel = async (r: Retarget) => {
    setError(null);
    try {
      await api.cancelRetarget(r.retarget_id);
    } catch (e) {
      setError(describe(e));
    }
    await reload();
  };
  return (
    <section aria-labelledby="retargets-title">
      <h2 id="retargets-title">Its retargets</h2>
      {(dispatching || scheduled) && (
        <p class="note" aria-live="polite">
          Refreshing automatically while {dispatching ? 'one is being sent' : 'one is scheduled'}.
        </p>
      )}
      {list.state === 'error' && (
        <p class="error" role="alert">
          {describe(list.error)}
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {list.state === 'ok' && retargets.length === 0 && <p>No retargets of this message yet.</p>}
      {retargets.length > 0 && (
        <div class="scroll" role="region" aria-labelledby="retargets-title" tabIndex={0}>
          <table class="retargets">
            <thead>
              <tr>
                <th scope="col">Retarget</th>
                <th scope="col">Audience</th>
                <th scope="col">Send at</th>
                <th scope="col">Status</th>
                <th scope="col" class="n">
                  Audience size
                </th>
                <th scope="col" class="n">
                  Enqueued
                </th>
                <th scope="col" class="n">
                  Unreachable
                </th>
                <th scope="col" class="n">
                  Deferred
                </th>
                <th scope="col" class="n">
                  Capped
                </th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {retargets.map((r) => (
                <tr key={r.retarget_id} data-retarget={r.retarget_id} data-status={r.status}>
                  <td>
                    <a href={href.message(r.message_id)} class="mono" title="Open its message">
                      {r.retarget_id}
                    </a>
                  </td>
                  <td>
                    {r.action ? ACTION_LABELS[r.action] : `did ${r.did?.join(', ') || '—'} / not ${r.did_not?.join(', ') || '—'}`} → {r.channel}
                  </td>
                  <td>
                    <time dateTime={r.send_at}>{localTime(r.send_at)}</time>
                  </td>
                  <td>
                    <span class={`status ${r.status}`}>{r.status}</span>
                    {r.failure && <span class="note"> {r.failure}</span>}
                  </td>
                  <td class="n" data-col="audience_size">
                    {num(r.audience_size)}
                  </td>
                  <td class="n" data-col="enqueued">
                    {num(r.enqueued)}
                  </td>
                  <td class="n" data-col="unreachable">
                    {num(r.unreachable)}
                  </td>
                  <td class="n" data-col="deferred">
                    {num(r.deferred)}
                  </td>
                  <td class="n" data-col="capped">
                    {num(r.capped)}
                  </td>
                  <td>
                    {r.status === 'scheduled' && (
                      <button type="button" class="secondary" onClick={() => cancel(r)} aria-label={`Cancel retarget ${r.retarget_id}`}>
                        Cancel
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <button type="button" class="secondary" onClick={() => void reload()}>
        Refresh
      </button>
    </section>
  );
}
