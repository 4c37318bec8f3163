import { describe, expect, it } from 'vitest';
import type { Stats } from './api';
import { actionsOf, funnel, kindsOf } from './funnel';

const stats = (s: Partial<Stats>): Stats => ({ sent: 0, delivered: 0, clicked: 0, failed: 0, undelivered: 0, converted: 0, ...s });

describe('funnel', () => {
  it('goes sent → delivered → clicked → converted for push and sms, with shares of sent and of the step before', () => {
    const f = funnel('push', stats({ sent: 2000, delivered: 1500, clicked: 300, converted: 30 }));
    expect(f.map((s) => s.kind)).toEqual(['sent', 'delivered', 'clicked', 'converted']);
    expect(f.map((s) => s.count)).toEqual([2000, 1500, 300, 30]);
    expect(f.map((s) => s.ofFirst)).toEqual([1, 0.75, 0.15, 0.015]);
    expect(f.map((s) => s.ofPrevious)).toEqual([1, 0.75, 0.2, 0.1]);
  });
  it('has an opened step for email', () => {
    const f = funnel('email', stats({ sent: 10, delivered: 9, opened: 5, clicked: 2, converted: 1 }));
    expect(f.map((s) => s.kind)).toEqual(['sent', 'delivered', 'opened', 'clicked', 'converted']);
    expect(f[2]!.ofPrevious).toBeCloseTo(5 / 9);
  });
  it('has no shares when nothing was sent, and shows the API’s counts as they are', () => {
    const f = funnel('sms', stats({}));
    expect(f.every((s) => s.ofFirst === null)).toBe(true);
    const clickedUndelivered = funnel('push', stats({ sent: 2, delivered: 0, clicked: 1 }));
    expect(clickedUndelivered[2]!.ofPrevious).toBeNull();
    expect(clickedUndelivered[2]!.ofFirst).toBe(0.5);
  });
});

describe('what a channel can be asked', () => {
  it('opened exists for email only', () => {
    expect(actionsOf('push')).not.toContain('opened');
    expect(actionsOf('sms')).toHaveLength(7);
    expect(actionsOf('email')).toEqual(expect.arrayContaining(['opened', 'not_opened']));
    expect(actionsOf('email')).toHaveLength(9);
  });
  it('each channel has its own event kinds', () => {
    expect(kindsOf('push')).not.toContain('undelivered');
    expect(kindsOf('sms')).toContain('undelivered');
    expect(kindsOf('email')).toEqual(expect.arrayContaining(['opened', 'bounced', 'complained']));
  });
});
