import { useEffect, useState } from 'preact/hooks';
import { Api, Channel, DeliveryPolicy } from './api';
import { describe } from './errors';
import { CHANNELS } from './funnel';
import { useLoad } from './load';

const zones: string[] = (() => {
  try {
    return (Intl as unknown as { supportedValuesOf(k: string): string[] }).supportedValuesOf('timeZone');
  } catch {
    return [];
  }
})();

export function Policy({ api }: { api: Api }) {
  const [loaded] = useLoad(() => api.policy(), [api.key]);
  return (
    <section aria-labelledby="policy-title">
      <h1 id="policy-title">Delivery policy</h1>
      <p class="note">
        Applies to every message, retarget and follow-up of this app that is not transactional. Times are each recipient's local time.
      </p>
      {loaded.state === 'loading' && <p aria-live="polite">Loading policy…</p>}
      {loaded.state === 'error' && (
        <p class="error" role="alert">
          {describe(loaded.error)}
        </p>
      )}
      {loaded.state === 'ok' && <PolicyForm api={api} initial={loaded.value} />}
    </section>
  );
}

function Channels({ name, value, onChange }: { name: string; value: Channel[]; onChange: (v: Channel[]) => void }) {
  return (
    <fieldset class="kinds">
      <legend>Channels</legend>
      {CHANNELS.map((c) => (
        <label key={c}>
          <input type="checkbox" name={name} checked={value.includes(c)} onChange={(e) => onChange(e.currentTarget.checked ? [...value, c] : value.filter((x) => x !== c))} /> {c}
        </label>
      ))}
    </fieldset>
  );
}

function PolicyForm({ api, initial }: { api: Api; initial: DeliveryPolicy }) {
  const [quiet, setQuiet] = useState(initial.quiet_hours !== null);
  const [start, setStart] = useState(initial.quiet_hours?.start ?? '21:00');
  const [end, setEnd] = useState(initial.quiet_hours?.end ?? '08:00');
  const [quietChannels, setQuietChannels] = useState<Channel[]>(initial.quiet_hours?.channels ?? ['sms']);
  const [zone, setZone] = useState(initial.default_timezone);
  const [capped, setCapped] = useState(initial.frequency_cap !== null);
  const [max, setMax] = useState(String(initial.frequency_cap?.max ?? 3));
  const [perHours, setPerHours] = useState(String(initial.frequency_cap?.per_hours ?? 24));
  const [capChannels, setCapChannels] = useState<Channel[]>(initial.frequency_cap?.channels ?? ['push', 'sms', 'email']);
  const [state, setState] = useState<{ saving: boolean; error: string | null; saved: boolean }>({ saving: false, error: null, saved: false });
  useEffect(() => setState((s) => ({ ...s, saved: false })), [quiet, start, end, quietChannels.join(), zone, capped, max, perHours, capChannels.join()]);

  const save = async (e: Event) => {
    e.preventDefault();
    const policy: DeliveryPolicy = {
      quiet_hours: quiet ? { start, end, channels: quietChannels } : null,
      default_timezone: zone.trim(),
      frequency_cap: capped ? { max: Number(max), per_hours: Number(perHours), channels: capChannels } : null,
    };
    setState({ saving: true, error: null, saved: false });
    try {
      await api.putPolicy(policy);
      setState({ saving: false, error: null, saved: true });
    } catch (err) {
      setState({ saving: false, error: describe(err), saved: false });
    }
  };

  return (
    <form onSubmit={save} class="policy">
      <fieldset>
        <legend>Quiet hours</legend>
        <label>
          <input type="checkbox" checked={quiet} onChange={(e) => setQuiet(e.currentTarget.checked)} /> Hold sends during quiet hours (they go when the hours end)
        </label>
        {quiet && (
          <div class="row">
            <div class="field">
              <label for="qh-start">From</label>
              <input id="qh-start" type="time" value={start} onInput={(e) => setStart(e.currentTarget.value)} required />
            </div>
            <div class="field">
              <label for="qh-end">Until</label>
              <input id="qh-end" type="time" value={end} onInput={(e) => setEnd(e.currentTarget.value)} required />
            </div>
            <Channels name="qh-channels" value={quietChannels} onChange={setQuietChannels} />
          </div>
        )}
      </fieldset>
      <fieldset>
        <legend>Default time zone</legend>
        <div class="field">
          <label for="tz">For recipients whose own zone is unknown</label>
          <input id="tz" list="tz-list" value={zone} onInput={(e) => setZone(e.currentTarget.value)} required autoComplete="off" spellcheck={false} />
          <datalist id="tz-list">
            {zones.map((z) => (
              <option key={z} value={z} />
            ))}
          </datalist>
        </div>
      </fieldset>
      <fieldset>
        <legend>Frequency cap</legend>
        <label>
          <input type="checkbox" checked={capped} onChange={(e) => setCapped(e.currentTarget.checked)} /> Limit how many messages one person receives
        </label>
        {capped && (
          <div class="row">
            <div class="field">
              <label for="cap-max">At most (messages)</label>
              <input id="cap-max" type="number" min={1} step={1} value={max} onInput={(e) => setMax(e.currentTarget.value)} required />
            </div>
            <div class="field">
              <label for="cap-hours">Per (hours, 1 to 720)</label>
              <input id="cap-hours" type="number" min={1} max={720} step={1} value={perHours} onInput={(e) => setPerHours(e.currentTarget.value)} required />
            </div>
            <Channels name="cap-channels" value={capChannels} onChange={setCapChannels} />
          </div>
        )}
      </fieldset>
      <button type="submit" disabled={state.saving}>
        {state.saving ? 'Saving…' : 'Save policy'}
      </button>
      {state.error && (
        <p class="error" role="alert">
          {state.error}
        </p>
      )}
      {state.saved && (
        <p class="ok" role="status">
          Saved.
        </p>
      )}
    </form>
  );
}
