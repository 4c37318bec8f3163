import { useState } from 'preact/hooks';
import { Action, Api, Audience, AudienceCount, Channel, EventKind, Message } from './api';
import { FunnelChart } from './chart';
import { downloadCsv } from './download';
import { describe } from './errors';
import { localTime, num } from './format';
import { ACTION_LABELS, CHANNELS, actionsOf, kindsOf } from './funnel';
import { type Live, useLoad } from './load';
import { RetargetForm, Retargets } from './retarget';
import { href } from './route';

export function MessagePanel({ api, id }: { api: Api; id: string }) {
  const [message] = useLoad(() => api.message(id), [api.key, id]);
  const [retargetsVersion, setRetargetsVersion] = useState(0);
  if (message.state === 'loading') return <p aria-live="polite">Loading message…</p>;
  if (message.state === 'error')
    return (
      <section>
        <h1>Message {id}</h1>
        <p class="error" role="alert">
          {describe(message.error)}
        </p>
        <a href={href.messages()}>Back to messages</a>
      </section>
    );
  const m = message.value;
  const expired = Date.parse(m.expires_at) <= Date.now();
  return (
    <article aria-labelledby="message-title">
      <p>
        <a href={href.messages()}>← Messages</a>
      </p>
      <h1 id="message-title">
        {cap(m.channel)} message <span class="mono">{m.message_id}</span>
      </h1>
      <dl class="facts">
        <div>
          <dt>Created</dt>
          <dd>
            <time dateTime={m.created_at}>{localTime(m.created_at)}</time>
          </dd>
        </div>
        <div>
          <dt>{expired ? 'Expired' : 'Expires'}</dt>
          <dd>
            <time dateTime={m.expires_at}>{localTime(m.expires_at)}</time>
          </dd>
        </div>
        <div>
          <dt>Recipients</dt>
          <dd>{num(m.recipients)}</dd>
        </div>
        <div>
          <dt>Retargetable</dt>
          <dd>{m.retargetable ? 'Yes' : 'No'}</dd>
        </div>
        {m.retarget_of && (
          <div>
            <dt>Retarget of</dt>
            <dd>
              <a href={href.message(m.retarget_of)} class="mono">
                {m.retarget_of}
              </a>
            </dd>
          </div>
        )}
      </dl>
      <blockquote class="contents">
        {m.contents.title && <strong>{m.contents.title}</strong>}
        <p>{m.contents.body}</p>
        {m.contents.url && <p class="mono">{m.contents.url}</p>}
      </blockquote>

      <section aria-labelledby="funnel-title">
        <h2 id="funnel-title">Funnel</h2>
        <FunnelChart channel={m.channel} stats={m.stats} />
        <StatsTable m={m} />
      </section>

      <Activity api={api} m={m} />
      <Combined api={api} m={m} />
      <RetargetForm api={api} m={m} onCreated={() => setRetargetsVersion((v) => v + 1)} />
      <Retargets api={api} messageId={m.message_id} version={retargetsVersion} />
    </article>
  );
}

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

function StatsTable({ m }: { m: Message }) {
  const entries = Object.entries(m.stats) as [string, number | undefined][];
  return (
    <div class="scroll" role="region" aria-label="Stats" tabIndex={0}>
    <table class="stats">
      <caption class="visually-hidden">Stats: distinct subscriptions per event kind</caption>
      <thead>
        <tr>
          {entries.map(([k]) => (
            <th scope="col" key={k}>
              {cap(k)}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        <tr>
          {entries.map(([k, v]) => (
            <td key={k} class="n" data-kind={k}>
              {num(v ?? 0)}
            </td>
          ))}
        </tr>
      </tbody>
    </table>
    </div>
  );
}

/** Runs `tasks` `limit` at a time (a browser keeps six connections to an origin anyway), and
 * starts no more once the screen is gone. */
async function pooled<T>(tasks: (() => Promise<T>)[], live: Live, limit = 6): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length && live.current) {
      const i = next++;
      out[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return out;
}

type Cell = { ok: AudienceCount } | { error: unknown };

function Activity({ api, m }: { api: Api; m: Message }) {
  const actions = actionsOf(m.channel);
  const others = CHANNELS.filter((c) => c !== m.channel);
  const targets: Channel[] = [m.channel, ...others];
  const [cells] = useLoad(async (live) => {
    const tasks = actions.flatMap((action) =>
      targets.map((channel) => async (): Promise<Cell> => {
        try {
          return { ok: await api.count(m.message_id, { action, channel }) };
        } catch (error) {
          return { error };
        }
      }),
    );
    return pooled(tasks, live);
  }, [api.key, m.message_id]);
  const cell = (ai: number, ci: number): Cell | undefined => (cells.state === 'ok' ? cells.value[ai * targets.length + ci] : undefined);
  const firstError = cells.state === 'ok' ? cells.value.find((c): c is { error: unknown } => 'error' in c) : undefined;
  return (
    <section aria-labelledby="activity-title">
      <h2 id="activity-title">Audience activity</h2>
      <p class="note">
        Who did what with this message: the subscriptions of each action on {m.channel}, and for each other channel how many of those people are reachable there
        (through their external user id) and how many are not.
      </p>
      {cells.state === 'loading' && <p aria-live="polite">Counting audiences…</p>}
      {firstError && (
        <p class="error" role="alert">
          {describe(firstError.error)}
        </p>
      )}
      {cells.state === 'ok' && !firstError && (
        <div class="scroll" role="region" aria-labelledby="activity-title" tabIndex={0}>
          <table class="activity">
            <thead>
              <tr>
                <th scope="col" rowSpan={2}>
                  Action
                </th>
                <th scope="colgroup">{cap(m.channel)} (this channel)</th>
                {others.map((c) => (
                  <th scope="colgroup" colSpan={2} key={c}>
                    On {c}
                  </th>
                ))}
              </tr>
              <tr>
                <th scope="col" class="n">
                  Subscriptions
                </th>
                {others.map((c) => [
                  <th scope="col" class="n" key={`${c}-r`}>
                    Reachable
                  </th>,
                  <th scope="col" class="n" key={`${c}-u`}>
                    Unreachable
                  </th>,
                ])}
              </tr>
            </thead>
            <tbody>
              {actions.map((action, ai) => (
                <tr key={action} data-action={action}>
                  <th scope="row">{ACTION_LABELS[action]}</th>
                  {targets.map((channel, ci) => {
                    const c = cell(ai, ci);
                    const count = c && 'ok' in c ? c.ok : null;
                    return [
                      <td class="n" key={`${channel}-c`} data-channel={channel} data-col="count">
                        <span class="v">{num(count?.count)}</span> <CsvButton api={api} id={m.message_id} audience={{ action, channel }} label={`${ACTION_LABELS[action]} on ${channel}`} />
                      </td>,
                      ci > 0 && (
                        <td class="n" key={`${channel}-u`} data-channel={channel} data-col="unreachable">
                          <span class="v">{num(count?.unreachable)}</span>
                        </td>
                      ),
                    ];
                  })}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export function CsvButton({ api, id, audience, label }: { api: Api; id: string; audience: Audience; label: string }) {
  const [error, setError] = useState<string | null>(null);
  return (
    <>
      <button
        type="button"
        class="link"
        aria-label={`Download CSV: ${label}`}
        onClick={async () => {
          setError(null);
          try {
            await downloadCsv(api, id, audience);
          } catch (e) {
            setError(describe(e));
          }
        }}
      >
        CSV
      </button>
      {error && (
        <span class="error" role="alert">
          {error}
        </span>
      )}
    </>
  );
}

export function KindPicker({ legend, kinds, value, onChange, name }: { legend: string; kinds: EventKind[]; value: EventKind[]; onChange: (v: EventKind[]) => void; name: string }) {
  return (
    <fieldset class="kinds">
      <legend>{legend}</legend>
      {kinds.map((k) => (
        <label key={k}>
          <input
            type="checkbox"
            name={name}
            value={k}
            checked={value.includes(k)}
            onChange={(e) => onChange(e.currentTarget.checked ? [...value, k] : value.filter((x) => x !== k))}
          />{' '}
          {k}
        </label>
      ))}
    </fieldset>
  );
}

function Combined({ api, m }: { api: Api; m: Message }) {
  const kinds = kindsOf(m.channel);
  const [did, setDid] = useState<EventKind[]>(['delivered']);
  const [didNot, setDidNot] = useState<EventKind[]>(['clicked']);
  const [channel, setChannel] = useState<Channel>(m.channel);
  const audience: Audience = { did, did_not: didNot, channel };
  const empty = did.length === 0 && didNot.length === 0;
  const [count] = useLoad(() => (empty ? Promise.resolve(null) : api.count(m.message_id, audience)), [api.key, m.message_id, did.join(), didNot.join(), channel]);
  return (
    <section aria-labelledby="combined-title">
      <h2 id="combined-title">Did and did not</h2>
      <p class="note">Combine event kinds: the subscriptions that did all of the first and none of the second.</p>
      <div class="row">
        <KindPicker legend="Did" kinds={kinds} value={did} onChange={setDid} name="combined-did" />
        <KindPicker legend="Did not" kinds={kinds} value={didNot} onChange={setDidNot} name="combined-did-not" />
        <ChannelSelect id="combined-channel" label="Reach them on" value={channel} onChange={setChannel} />
      </div>
      <p aria-live="polite" class="count" data-testid="combined-count">
        {empty && 'Pick at least one kind.'}
        {!empty && count.state === 'loading' && 'Counting…'}
        {!empty && count.state === 'ok' && count.value && (
          <>
            <strong class="v">{num(count.value.count)}</strong> subscriptions
            {channel !== m.channel && <>, {num(count.value.unreachable)} unreachable</>}{' '}
            <CsvButton api={api} id={m.message_id} audience={audience} label="this combined audience" />
          </>
        )}
      </p>
      {!empty && count.state === 'error' && (
        <p class="error" role="alert">
          {describe(count.error)}
        </p>
      )}
    </section>
  );
}

export function ChannelSelect({ id, label, value, onChange }: { id: string; label: string; value: Channel; onChange: (c: Channel) => void }) {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <select id={id} value={value} onChange={(e) => onChange(e.currentTarget.value as Channel)}>
        {CHANNELS.map((c) => (
          <option value={c} key={c}>
            {c}
          </option>
        ))}
      </select>
    </div>
  );
}

export type { Action };
