import type { Api, Audience } from './api';

/** The audience's CSV (the API's own export, fetched with the key) saved by the browser. */
export async function downloadCsv(api: Api, messageId: string, audience: Audience): Promise<void> {
  const blob = await api.csv(messageId, audience);
  const name = 'action' in audience ? audience.action : `did-${audience.did.join('+') || 'none'}-didnot-${audience.did_not.join('+') || 'none'}`;
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = `audience-${messageId}-${name}-${audience.channel}.csv`;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
