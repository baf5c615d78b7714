// A container's journal, following live over SSE.
import { api } from './api.js';
import { h, $, fill } from './dom.js';

let source = null;

function open(name) {
  source?.close();
  const box = $('journal');
  fill(box);
  if (!name) return;
  const follow = $('follow').checked;
  source = new EventSource(`/api/logs/${encodeURIComponent(name)}?follow=${follow}`);
  source.addEventListener('line', (e) => {
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.append(e.data, '\n');
    if (atBottom) box.scrollTop = box.scrollHeight;
  });
  source.addEventListener('end', (e) => {
    box.append(h('span', { class: 'text-body-secondary' }, `— ${e.data} —\n`));
    source.close();
  });
  source.onerror = () => source.close();
}

export async function logs() {
  const status = await api('GET', '/api/status');
  const pick = $('log-container');
  const selected = pick.dataset.selected ?? '';
  fill(pick, h('option', { value: '' }, 'Choose a container'),
    status.containers.map((c) => h('option', { value: c.name, selected: c.name === selected }, c.name)));
  if (!status.live) {
    fill($('journal'), h('span', { class: 'text-body-secondary', id: 'logs-unavailable' }, status.logs_note));
    pick.disabled = true;
    $('follow').disabled = true;
    return;
  }
  pick.addEventListener('change', () => {
    window.history.replaceState(null, '', pick.value ? `/logs/${encodeURIComponent(pick.value)}` : '/logs');
    open(pick.value);
  });
  $('follow').addEventListener('change', () => open(pick.value));
  open(selected);
}
