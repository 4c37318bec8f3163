// The one client of the public API (docs/openapi.yaml): same origin, the API key as the API's
// own `Authorization: Bearer`, every error as the API's problem+json in an ApiError.
import type { components } from './api-types';

type S = components['schemas'];
export type Message = S['Message'];
export type MessagePage = S['MessagePage'];
export type Stats = S['Stats'];
export type Channel = S['Channel'];
export type Action = S['Action'];
export type EventKind = S['EventKind'];
export type AudienceCount = S['AudienceCount'];
export type Retarget = S['Retarget'];
export type RetargetCreated = S['RetargetCreated'];
export type DeliveryPolicy = S['DeliveryPolicy'];
export type Contents = S['Contents'];
export type Problem = S['Problem'];

/** An audience: one action, or did/did_not over event kinds; on a target channel. */
export type Audience =
  | { action: Action; channel: Channel }
  | { did: EventKind[]; did_not: EventKind[]; channel: Channel };

export type CreateRetarget = {
  source_message_id: string;
  channel: Channel;
  contents: Contents;
  send_at?: string;
  transactional: boolean;
} & ({ action: Action } | { did: EventKind[]; did_not: EventKind[] });

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail: string,
  ) {
    super(`${status} ${code}: ${detail}`);
  }
}

/** The fetch failed before any answer (offline, API down). */
export class NetworkError extends Error {}

export class Api {
  constructor(
    readonly key: string,
    readonly base = '',
  ) {}

  async raw(method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.key}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (e) {
      throw new NetworkError(String(e));
    }
    if (!response.ok) throw await problemOf(response);
    return response;
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await (await this.raw(method, path, body)).json()) as T;
  }

  messages(cursor: string | null, limit = 20) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (cursor) q.set('cursor', cursor);
    return this.json<MessagePage>('GET', `/v1/messages?${q}`);
  }
  message(id: string) {
    return this.json<Message>('GET', `/v1/messages/${encodeURIComponent(id)}`);
  }
  count(id: string, audience: Audience) {
    return this.json<AudienceCount>('GET', `/v1/messages/${encodeURIComponent(id)}/audience/count?${audienceQuery(audience)}`);
  }
  async csv(id: string, audience: Audience): Promise<Blob> {
    const r = await this.raw('GET', `/v1/messages/${encodeURIComponent(id)}/audience.csv?${audienceQuery(audience)}`);
    return r.blob();
  }
  retargets(id: string) {
    return this.json<{ retargets: Retarget[] }>('GET', `/v1/messages/${encodeURIComponent(id)}/retargets`);
  }
  createRetarget(body: CreateRetarget) {
    return this.json<RetargetCreated>('POST', '/v1/retargets', body);
  }
  cancelRetarget(id: string) {
    return this.json<Retarget>('DELETE', `/v1/retargets/${encodeURIComponent(id)}`);
  }
  policy() {
    return this.json<DeliveryPolicy>('GET', '/v1/app/delivery-policy');
  }
  putPolicy(policy: DeliveryPolicy) {
    return this.json<DeliveryPolicy>('PUT', '/v1/app/delivery-policy', policy);
  }
}

/** The query string of an audience: `action=…` or `did=…&did_not=…`, and `channel=…`. */
export function audienceQuery(a: Audience): string {
  const q = new URLSearchParams();
  if ('action' in a) q.set('action', a.action);
  else {
    if (a.did.length) q.set('did', a.did.join(','));
    if (a.did_not.length) q.set('did_not', a.did_not.join(','));
  }
  q.set('channel', a.channel);
  return q.toString();
}

async function problemOf(r: Response): Promise<ApiError> {
  try {
    const p = (await r.json()) as Partial<Problem>;
    return new ApiError(r.status, p.code ?? 'unknown', p.title ?? r.statusText, p.detail ?? '');
  } catch {
    return new ApiError(r.status, 'unknown', r.statusText, '');
  }
}
