import { describe, expect, it } from 'vitest';
import { excerpt, fromLocalInput, localTime, num, pct, toLocalInput } from './format';

describe('numbers', () => {
  it('have thousands separators, and a dash for nothing yet', () => {
    expect(num(1234567, 'en-US')).toBe('1,234,567');
    expect(num(1234567, 'de-DE')).toBe('1.234.567');
    expect(num(0, 'en-US')).toBe('0');
    expect(num(null)).toBe('—');
    expect(num(undefined)).toBe('—');
  });
  it('read as percentages, a decimal only below 10 %', () => {
    expect(pct(1, 2, 'en-US')).toBe('50%');
    expect(pct(2, 3, 'en-US')).toBe('67%');
    expect(pct(1, 40, 'en-US')).toBe('2.5%');
    expect(pct(0, 40, 'en-US')).toBe('0%');
    expect(pct(3, 2, 'en-US')).toBe('150%');
    expect(pct(1, 0, 'en-US')).toBe('—');
  });
});

describe('times', () => {
  it('show an instant in the viewer’s zone', () => {
    expect(localTime('2026-12-05T10:00:00Z', 'en-US', 'Europe/Paris')).toBe('Dec 5, 2026, 11:00 AM');
    expect(localTime('2026-07-05T10:00:00Z', 'en-US', 'America/New_York')).toBe('Jul 5, 2026, 6:00 AM');
  });
  it('typed as local wall-clock time go to the API as UTC to the second', () => {
    // The test process runs in Europe/Paris (vite.config.ts test.env): winter +1, summer +2.
    expect(fromLocalInput('2026-12-05T11:00')).toBe('2026-12-05T10:00:00Z');
    expect(fromLocalInput('2026-07-05T11:00')).toBe('2026-07-05T09:00:00Z');
    expect(fromLocalInput('2026-12-05T11:00:30')).toBe('2026-12-05T10:00:30Z');
    expect(fromLocalInput('')).toBeNull();
    expect(fromLocalInput('2026-12-05')).toBeNull();
    expect(fromLocalInput('2026-13-45T99:00')).toBeNull();
  });
  it('round-trip through the datetime-local input', () => {
    const d = new Date('2026-12-05T10:07:00Z');
    expect(toLocalInput(d)).toBe('2026-12-05T11:07');
    expect(fromLocalInput(toLocalInput(d))).toBe('2026-12-05T10:07:00Z');
  });
});

describe('excerpt', () => {
  it('keeps short texts and cuts long ones on one line', () => {
    expect(excerpt('Hello\n  there')).toBe('Hello there');
    const cut = excerpt('x'.repeat(100), 10);
    expect(cut).toHaveLength(10);
    expect(cut.endsWith('…')).toBe(true);
  });
});
