// What each channel's messages can be asked about, and its funnel.
import type { Action, Channel, EventKind, Stats } from './api';

export const CHANNELS: Channel[] = ['push', 'sms', 'email'];

/** The actions of a source channel (CONTRACT "Audiences"); `opened` exists for email only. */
export function actionsOf(channel: Channel): Action[] {
  const base: Action[] = ['sent', 'delivered', 'not_delivered'];
  const opens: Action[] = channel === 'email' ? ['opened', 'not_opened'] : [];
  return [...base, ...opens, 'clicked', 'not_clicked', 'converted', 'not_converted'];
}

/** The event kinds a channel's messages record (for did / did not). */
export function kindsOf(channel: Channel): EventKind[] {
  switch (channel) {
    case 'push':
      return ['sent', 'delivered', 'clicked', 'failed', 'converted'];
    case 'sms':
      return ['sent', 'delivered', 'undelivered', 'failed', 'clicked', 'converted'];
    case 'email':
      return ['sent', 'delivered', 'opened', 'clicked', 'bounced', 'complained', 'failed', 'converted'];
  }
}

export const ACTION_LABELS: Record<Action, string> = {
  sent: 'Sent',
  delivered: 'Delivered',
  not_delivered: 'Not delivered',
  opened: 'Opened',
  not_opened: 'Not opened',
  clicked: 'Clicked',
  not_clicked: 'Not clicked',
  converted: 'Converted',
  not_converted: 'Not converted',
};

export interface Step {
  kind: EventKind;
  label: string;
  count: number;
  /** Share of the first step (sent), "—" when nothing was sent. */
  ofFirst: number | null;
  /** Share of the step before. */
  ofPrevious: number | null;
}

/**
 * sent → delivered → (opened →) clicked → converted: the message's own `stats`, as the API
 * counts them (distinct subscriptions per event kind), not adjusted. A step may exceed the one
 * before it (a push click whose delivery receipt never came): its share then reads over 100 %,
 * which is what happened.
 */
export function funnel(channel: Channel, stats: Stats): Step[] {
  const kinds: EventKind[] = channel === 'email' ? ['sent', 'delivered', 'opened', 'clicked', 'converted'] : ['sent', 'delivered', 'clicked', 'converted'];
  const raw = kinds.map((k) => (stats as unknown as Record<string, number | undefined>)[k] ?? 0);
  const counts = raw;
  const first = counts[0] ?? 0;
  return kinds.map((kind, i) => ({
    kind,
    label: kind[0]!.toUpperCase() + kind.slice(1),
    count: counts[i]!,
    ofFirst: first ? counts[i]! / first : null,
    ofPrevious: i === 0 ? (first ? 1 : null) : counts[i - 1] ? counts[i]! / counts[i - 1]! : null,
  }));
}
