// Following an apply or rollback: its events over SSE, one line each,
// until it is done or failed; a Confirm button while it waits.
import { api } from './api.js';
import { h, fill, alert, showError } from './dom.js';

/// `quiet`: the caller shows the result itself (no alert at the top).
export function follow(id, box, onEnd, { quiet = false } = {}) {
  const list = h('ol', { class: 'progress-log small mb-0', id: 'progress-log' });
  fill(box, list);
  const line = (cls, text) => list.append(h('li', { class: cls }, text));
  const source = new EventSource(`/api/jobs/${id}`);
  source.addEventListener('progress', (e) => line('', JSON.parse(e.data).message));
  source.addEventListener('waiting', (e) => {
    const event = JSON.parse(e.data);
    const button = h('button', { class: 'btn btn-warning btn-sm ms-2', type: 'button', id: 'confirm' }, 'Confirm');
    const left = h('span', { class: 'ms-2 countdown' });
    const tick = () => {
      const s = Math.max(0, Math.round(event.deadline - Date.now() / 1000));
      left.textContent = `${s} s left`;
    };
    tick();
    const timer = setInterval(tick, 1000);
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await api('POST', '/api/confirm', { generation: event.event?.generation });
      } catch (err) {
        showError(err);
        button.disabled = false;
      }
    });
    list.append(h('li', { class: 'text-warning-emphasis waiting' }, event.message, button, left));
    // The banner of every page shows it too, with its own countdown.
    document.dispatchEvent(new CustomEvent('ctm:confirm-waiting'));
    source.addEventListener('done', () => { clearInterval(timer); button.remove(); left.remove(); });
    source.addEventListener('failed', () => { clearInterval(timer); button.remove(); left.remove(); });
  });
  const end = (ok) => (e) => {
    const event = JSON.parse(e.data);
    line(ok ? 'text-success fw-semibold result' : 'text-danger fw-semibold result', event.message);
    if (!quiet) alert(ok ? 'success' : 'danger', event.message);
    source.close();
    onEnd?.(ok, event);
  };
  source.addEventListener('done', end(true));
  source.addEventListener('failed', end(false));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) return;
    // The stream ends with the job; anything else is a lost connection.
    source.close();
  };
  return source;
}
