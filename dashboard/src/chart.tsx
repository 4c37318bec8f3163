// The funnel as a person would rather look at it: bars, their counts and shares. Plain SVG,
// sized by attributes (the policy allows no inline style).
import type { Channel, Stats } from './api';
import { num, pct } from './format';
import { funnel } from './funnel';

export function FunnelChart({ channel, stats }: { channel: Channel; stats: Stats }) {
  const steps = funnel(channel, stats);
  const first = steps[0]?.count ?? 0;
  const max = Math.max(1, ...steps.map((s) => s.count));
  const row = 34;
  const labelW = 84;
  const barW = 200;
  const height = steps.length * row;
  const summary = steps.map((s) => `${s.label} ${num(s.count)} (${pct(s.count, first)})`).join(', ');
  return (
    <figure class="funnel">
      <svg viewBox={`0 0 ${labelW + barW + 110} ${height}`} role="img" aria-label={`Funnel: ${summary}`} preserveAspectRatio="xMinYMin meet">
        {steps.map((s, i) => {
          const w = Math.max(2, (s.count / max) * barW);
          const y = i * row;
          return (
            <g key={s.kind}>
              <text x={0} y={y + 21} class="label">
                {s.label}
              </text>
              <rect x={labelW} y={y + 6} width={barW} height={22} class="track" rx={3} />
              <rect x={labelW} y={y + 6} width={w} height={22} class={`bar step${i}`} rx={3} />
              <text x={labelW + barW + 10} y={y + 21} class="value">
                {num(s.count)} · {pct(s.count, first)}
              </text>
            </g>
          );
        })}
      </svg>
      <figcaption class="note">Share of sent. Distinct subscriptions per event, as the API counts them.</figcaption>
    </figure>
  );
}

/** The funnel at a glance, for a table row: counts with the share of sent, and tiny bars. */
export function MiniFunnel({ channel, stats }: { channel: Channel; stats: Stats }) {
  const steps = funnel(channel, stats);
  const first = steps[0]?.count ?? 0;
  const max = Math.max(1, ...steps.map((s) => s.count));
  return (
    <div class="mini">
      <svg width="64" height="20" viewBox="0 0 64 20" aria-hidden="true">
        {steps.map((s, i) => {
          const h = Math.max(1, (s.count / max) * 20);
          return <rect key={s.kind} x={i * 16} y={20 - h} width={13} height={h} class={`bar step${i}`} />;
        })}
      </svg>
      <span>
        {steps.map((s, i) => (
          <span key={s.kind} class="step" title={s.label}>
            {i > 0 && <span aria-hidden="true"> → </span>}
            <span class="visually-hidden">{s.label} </span>
            {num(s.count)}
            {i > 0 && <span class="muted"> ({pct(s.count, first)})</span>}
          </span>
        ))}
      </span>
    </div>
  );
}
