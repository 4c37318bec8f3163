// How numbers and times read: thousands separators, percentages, the person's local time.

export function num(n: number | null | undefined, locale?: string): string {
  if (n === null || n === undefined) return '—';
  return new Intl.NumberFormat(locale).format(n);
}

/** `part` of `whole` as a percentage with one decimal below 10 %, none above; "—" of nothing. */
export function pct(part: number, whole: number, locale?: string): string {
  if (!whole) return '—';
  const ratio = part / whole;
  const digits = ratio > 0 && ratio < 0.1 ? 1 : 0;
  return new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(ratio);
}

/** An RFC 3339 instant in the viewer's local time (or `timeZone`), e.g. "Dec 5, 2026, 10:00". */
export function localTime(iso: string, locale?: string, timeZone?: string): string {
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone }).format(new Date(iso));
}

const pad = (n: number) => String(n).padStart(2, '0');

/** A Date as the value of an `<input type="datetime-local">`: the local wall-clock time. */
export function toLocalInput(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A `datetime-local` value (local wall-clock time) as the API's UTC instant, to the second. */
export function fromLocalInput(value: string): string | null {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value)) return null;
  const d = new Date(value); // no zone: parsed as local time
  if (Number.isNaN(d.getTime())) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The first `max` characters of a text, on one line, with an ellipsis when cut. */
export function excerpt(text: string, max = 60): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length <= max ? line : `${line.slice(0, max - 1).trimEnd()}…`;
}
