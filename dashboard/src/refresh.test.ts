import { describe, expect, it } from 'vitest';
import { refreshInterval } from './retarget';

const now = Date.parse('2026-12-05T10:00:00Z');
const at = (seconds: number) => new Date(now + seconds * 1000).toISOString();

describe('following retargets', () => {
  it('asks often while one is dispatching or due, rarely while they wait, never once settled', () => {
    expect(refreshInterval([{ status: 'dispatching', send_at: at(-5) }], now)).toBe(1500);
    expect(refreshInterval([{ status: 'scheduled', send_at: at(60) }], now)).toBe(3000);
    expect(refreshInterval([{ status: 'scheduled', send_at: at(-600) }], now)).toBe(3000);
    expect(refreshInterval([{ status: 'scheduled', send_at: at(86_400) }], now)).toBe(30_000);
    expect(refreshInterval([{ status: 'dispatched', send_at: at(-60) }, { status: 'cancelled', send_at: at(60) }], now)).toBeNull();
    expect(refreshInterval([], now)).toBeNull();
  });
});
