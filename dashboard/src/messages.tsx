import { useEffect } from 'preact/hooks';
import { Api, ApiError, Message } from './api';
import { MiniFunnel } from './chart';
import { describe } from './errors';
import { excerpt, localTime, num } from './format';
import { useLoad } from './load';
import { href } from './route';

export function Messages({ api, cursor, onUnauthorized }: { api: Api; cursor: string | null; onUnauthorized: () => void }) {
  const [page] = useLoad(() => api.messages(cursor), [api.key, cursor]);
  useEffect(() => {
    if (page.state === 'error' && page.error instanceof ApiError && page.error.status === 401) onUnauthorized();
  }, [page]);
  return (
    <section aria-labelledby="messages-title">
      <h1 id="messages-title">Messages</h1>
      <p class="note">Newest first. Open a message for its activity, its audiences and its retargets.</p>
      {page.state === 'loading' && <p aria-live="polite">Loading messages…</p>}
      {page.state === 'error' && (
        <p class="error" role="alert">
          {describe(page.error)}
        </p>
      )}
      {page.state === 'ok' && (
        <>
          {page.value.messages.length === 0 ? (
            <p>No messages yet. Messages sent through the API (POST /v1/messages) appear here.</p>
          ) : (
            <div class="scroll" role="region" aria-labelledby="messages-title" tabIndex={0}>
              <table class="messages">
                <thead>
                  <tr>
                    <th scope="col">Message</th>
                    <th scope="col">Channel</th>
                    <th scope="col">Contents</th>
                    <th scope="col">Created</th>
                    <th scope="col" class="n">
                      Recipients
                    </th>
                    <th scope="col">Funnel</th>
                  </tr>
                </thead>
                <tbody>
                  {page.value.messages.map((m) => (
                    <Row key={m.message_id} m={m} />
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <nav class="pager" aria-label="Pages">
            {cursor && <a href={href.messages()}>Newest</a>}
            {page.value.next_cursor && (
              <a href={href.messages(page.value.next_cursor)} rel="next">
                Older messages
              </a>
            )}
          </nav>
        </>
      )}
    </section>
  );
}

function Row({ m }: { m: Message }) {
  const expired = Date.parse(m.expires_at) <= Date.now();
  const text = m.contents.title ? `${m.contents.title} — ${m.contents.body}` : m.contents.body;
  return (
    <tr class={expired ? 'expired' : undefined}>
      <td>
        <a href={href.message(m.message_id)} class="mono">
          {m.message_id}
        </a>
        {m.retarget_of && <span class="tag">retarget</span>}
        {expired && <span class="tag warn">expired</span>}
        {m.status === 'scheduled' && <span class="tag">scheduled</span>}
      </td>
      <td data-label="Channel">{m.channel}</td>
      <td class="contents">{excerpt(text)}</td>
      <td data-label="Created">
        <time dateTime={m.created_at}>{localTime(m.created_at)}</time>
      </td>
      <td class="n" data-label="Recipients">
        {num(m.recipients)}
      </td>
      <td>
        <MiniFunnel channel={m.channel} stats={m.stats} />
      </td>
    </tr>
  );
}
