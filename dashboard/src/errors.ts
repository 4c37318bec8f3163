// An API error in words a person can act on; the API's own `detail` where it says it best.
import { ApiError, NetworkError } from './api';

const WORDS: Record<string, string> = {
  unauthorized: 'This API key was not accepted. Check it, or ask for a new one.',
  plan_required: 'Retargeting needs a paid plan (pro or enterprise) for this app.',
  source_expired: 'This message is older than 30 days: its activity has expired and it can no longer be retargeted.',
  source_not_retargetable: 'This message was created before the app had retargeting, so its audiences cannot be retargeted.',
  channel_not_configured: 'The app has no provider credentials for this channel yet.',
  already_dispatched: 'This retarget is already being sent: it can no longer be cancelled.',
  not_found: 'Not found: it may belong to another app, or no longer exist.',
  segments_not_combinable: 'A retarget audience cannot be combined with other segments.',
  unavailable: 'The service is busy right now. Try again in a moment.',
  internal: 'Something went wrong on the server. Try again; if it keeps happening, check the logs.',
};

/** The codes whose `detail` is the message (the API names the field or the window). */
const DETAIL_FIRST = new Set(['send_at_out_of_window', 'invalid_request', 'invalid_action', 'invalid_timezone']);

export function describe(e: unknown): string {
  if (e instanceof ApiError) {
    if (DETAIL_FIRST.has(e.code) && e.detail) return sentence(e.detail);
    const words = WORDS[e.code];
    if (words) return words;
    return sentence(e.detail || e.title || `The API answered ${e.status}`);
  }
  if (e instanceof NetworkError) return 'The API could not be reached. Check your connection and try again.';
  return 'Something unexpected happened. Reload the page and try again.';
}

function sentence(s: string): string {
  const t = s.trim();
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}
