// The editor: the host file in CodeMirror, checked as you type by the
// same validator as `ctm check` and planned by the same plan as `ctm plan`
// (one POST /api/plan per pause in typing); saving with a check that the
// file did not change on disk meanwhile; the network and container forms.
import { EditorState } from '@codemirror/state';
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection,
} from '@codemirror/view';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { StreamLanguage, syntaxHighlighting, defaultHighlightStyle, bracketMatching } from '@codemirror/language';
import { linter, lintGutter } from '@codemirror/lint';
import { toml } from '@codemirror/legacy-modes/mode/toml';

import { api } from './api.js';
import { kdl } from './kdl-mode.js';
import { h, $, fill, alert, showError, diffBlock } from './dom.js';
import { renderPlan } from './plan.js';

let view;
/// The text on disk as last loaded or saved: what a save compares against.
let base = '';

/// Byte offsets (the server's spans) to positions in the editor's text.
function positions(text) {
  const bytes = new TextEncoder().encode(text);
  const decoder = new TextDecoder();
  return (offset) => decoder.decode(bytes.subarray(0, Math.min(offset, bytes.length))).length;
}

function setValidity(check) {
  const errors = check.diagnostics.filter((d) => d.severity === 'error').length;
  const badge = $('validity');
  badge.className = `badge ${errors ? 'text-bg-danger' : 'text-bg-success'}`;
  badge.textContent = errors ? `${errors} problem${errors === 1 ? '' : 's'}` : 'valid';
}

function showDiagnostics(check, toPos) {
  fill($('diagnostics'), check.diagnostics.map((d) => h('li', { class: 'diagnostic mb-1' },
    h('button', {
      type: 'button',
      class: 'btn btn-link btn-sm p-0 me-2 align-baseline font-monospace',
      onclick: () => {
        const pos = toPos(d.span.offset);
        view.dispatch({ selection: { anchor: pos }, scrollIntoView: true });
        view.focus();
      },
    }, `${d.line}:${d.column}`),
    h('span', { class: d.severity === 'error' ? 'text-danger' : 'text-warning-emphasis' }, d.message),
    h('span', { class: 'text-body-secondary' }, ` (${d.code})`),
    d.help ? h('div', { class: 'text-body-secondary ms-4' }, 'help: ', d.help) : null)));
}

/// The linter: validates and plans the text, shows both.
async function check(editorView) {
  const text = editorView.state.doc.toString();
  let answer;
  try {
    answer = await api('POST', '/api/plan', { text });
  } catch (e) {
    fill($('plan'), h('div', { class: 'alert alert-warning mb-0' }, e.message));
    return [];
  }
  if (editorView.state.doc.toString() !== text) return [];
  const toPos = positions(text);
  setValidity(answer.check);
  showDiagnostics(answer.check, toPos);
  if (answer.plan) {
    fill($('plan'), h('p', { class: 'small text-body-secondary mb-2' }, answer.host), renderPlan(answer.plan));
  } else {
    fill($('plan'), h('p', { class: 'text-body-secondary mb-0' }, 'Fix the problems to see the plan.'));
  }
  const length = text.length;
  return answer.check.diagnostics
    .filter((d) => d.file.endsWith('.lock') === false)
    .map((d) => {
      const from = Math.min(toPos(d.span.offset), length);
      const to = Math.min(Math.max(from, toPos(d.span.offset + d.span.length)), length);
      return {
        from,
        to,
        severity: d.severity,
        message: d.help ? `${d.message}\nhelp: ${d.help}` : d.message,
        source: d.code,
      };
    });
}

function markSaved(saved) {
  $('saved-state').textContent = saved ? 'saved' : 'unsaved changes';
}

/// Replaces the whole text; the cursor goes to where it first differs,
/// scrolled into view, so a form's change is in sight.
function setText(text) {
  const old = view.state.doc.toString();
  let at = 0;
  while (at < old.length && at < text.length && old[at] === text[at]) at += 1;
  view.dispatch({
    changes: { from: 0, to: view.state.doc.length, insert: text },
    selection: { anchor: Math.min(at, text.length) },
    scrollIntoView: true,
  });
}

async function save() {
  const text = view.state.doc.toString();
  try {
    await api('POST', '/api/save', { text, base });
    base = text;
    markSaved(true);
    alert('success', 'Saved.');
  } catch (e) {
    if (e.status !== 409 || e.data.current === undefined) throw e;
    const current = e.data.current;
    fill($('conflict-diff'), diffBlock(e.data.diff));
    $('conflict').classList.remove('d-none');
    $('conflict-keep').onclick = () => {
      // The next save overwrites their version with mine.
      base = current;
      $('conflict').classList.add('d-none');
      markSaved(false);
    };
    $('conflict-take').onclick = () => {
      base = current;
      setText(current);
      $('conflict').classList.add('d-none');
      markSaved(true);
    };
  }
}

async function load() {
  const source = await api('GET', '/api/source');
  base = source.text;
  return source;
}

function tabs() {
  for (const button of document.querySelectorAll('[data-tab]')) {
    button.addEventListener('click', () => {
      for (const other of document.querySelectorAll('[data-tab]')) {
        const active = other === button;
        other.classList.toggle('active', active);
        other.setAttribute('aria-selected', String(active));
        $(other.dataset.tab).classList.toggle('d-none', !active);
      }
      if (button.dataset.tab !== 'plan-pane') refreshPicks();
    });
  }
}

const FIELDS = {
  network: ['name', 'bridge', 'ipv4', 'ipv6'],
  container: ['name', 'template', 'image', 'network', 'ipv4', 'ipv6'],
};
const CHECKS = {
  network: [['nat4', 'ipv4_nat'], ['nat6', 'ipv6_nat']],
  container: [['docker', 'docker'], ['nested', 'nested']],
};

async function refreshPicks() {
  const text = view.state.doc.toString();
  for (const kind of ['network', 'container']) {
    const answer = await api('POST', '/api/edit/read', { text, kind, name: '' });
    const pick = $(`${kind}-pick`);
    fill(pick, h('option', { value: '' }, `New ${kind}`), answer.values.names.map((n) => h('option', { value: n }, n)));
  }
}

function fillForm(kind, form) {
  for (const f of FIELDS[kind]) $(`${kind}-${f}`).value = form?.[f] ?? '';
  for (const [id, key] of CHECKS[kind]) $(`${kind}-${id}`).checked = Boolean(form?.[key]);
  if (kind === 'container') {
    $('container-forwards').value = (form?.forwards ?? []).map((f) => `${f.protocol} ${f.host} ${f.container}`).join('\n');
    $('container-keys').value = (form?.authorized_keys ?? []).join('\n');
  }
}

function readForm(kind) {
  const values = {};
  for (const f of FIELDS[kind]) values[f] = $(`${kind}-${f}`).value.trim();
  for (const [id, key] of CHECKS[kind]) values[key] = $(`${kind}-${id}`).checked;
  if (kind === 'container') {
    values.forwards = $('container-forwards').value.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
      const [protocol, host, container, extra] = l.split(/\s+/);
      const port = (p) => (/^\d+$/.test(p ?? '') && Number(p) <= 65535 ? Number(p) : NaN);
      if (extra !== undefined || Number.isNaN(port(host)) || Number.isNaN(port(container))) {
        throw new Error(`"${l}" is not a forward: write the protocol, the host port and the container port, e.g. "tcp 8080 80"`);
      }
      return { protocol, host: port(host), container: port(container) };
    });
    values.authorized_keys = $('container-keys').value.split('\n').map((l) => l.trim()).filter(Boolean);
  }
  return values;
}

function forms() {
  for (const kind of ['network', 'container']) {
    $(`${kind}-load`).addEventListener('click', async () => {
      const name = $(`${kind}-pick`).value;
      const answer = await api('POST', '/api/edit/read', { text: view.state.doc.toString(), kind, name })
        .catch(showError);
      if (answer) fillForm(kind, answer.values.form);
    });
    $(`${kind}-form`).addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        const values = readForm(kind);
        const answer = await api('POST', '/api/edit', { text: view.state.doc.toString(), kind, values });
        setText(answer.text);
        alert('info', `${kind[0].toUpperCase()}${kind.slice(1)} ${values.name} is in the editor now. Review the plan, then save.`);
        refreshPicks();
      } catch (err) {
        showError(err);
      }
    });
  }
}

export async function editor() {
  const source = await load();
  const language = source.format === 'toml' ? StreamLanguage.define(toml) : StreamLanguage.define(kdl);
  view = new EditorView({
    parent: $('editor'),
    state: EditorState.create({
      doc: source.text,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightActiveLine(),
        drawSelection(),
        history(),
        bracketMatching(),
        language,
        syntaxHighlighting(defaultHighlightStyle),
        lintGutter(),
        linter(check, { delay: 300 }),
        keymap.of([
          { key: 'Mod-s', run: () => { save().catch(showError); return true; } },
          indentWithTab, ...defaultKeymap, ...historyKeymap,
        ]),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) markSaved(u.state.doc.toString() === base);
        }),
        EditorView.lineWrapping,
        // CodeMirror's styles go into a <style> element, which the CSP
        // lets in only with this response's nonce.
        EditorView.cspNonce.of(document.querySelector('meta[name="csp-nonce"]')?.content ?? ''),
      ],
    }),
  });
  // For the browser tests, which replace the whole text at once.
  window.ctmEditor = view;
  markSaved(true);
  $('save').addEventListener('click', () => save().catch(showError));
  $('revert').addEventListener('click', async () => {
    if (view.state.doc.toString() !== base && !window.confirm('Drop your unsaved changes?')) return;
    const fresh = await load().catch(showError);
    if (fresh) { setText(fresh.text); markSaved(true); }
  });
  $('to-apply').addEventListener('click', (e) => {
    if (view.state.doc.toString() !== base) {
      e.preventDefault();
      alert('warning', 'Save first: apply applies the saved host file.');
    }
  });
  tabs();
  forms();
}
