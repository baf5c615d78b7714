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
import { tabs } from './tabs.js';

let view;
let draftTimer = null;
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

/// Unsaved edits are kept in this browser (localStorage) until saved, so
/// that a closed tab or a crash loses nothing; the key names the file.
const draftKey = () => `ctm-draft:${$('file-name').title}`;

function keepDraft(text) {
  try {
    if (text === base) localStorage.removeItem(draftKey());
    else localStorage.setItem(draftKey(), JSON.stringify({ base, text }));
  } catch {
    // Storage full or refused: the warning before leaving still holds.
  }
}

/// A draft of the file as it is on disk now: offered back.
function offerDraft() {
  let draft;
  try {
    draft = JSON.parse(localStorage.getItem(draftKey()) ?? 'null');
  } catch {
    draft = null;
  }
  if (!draft || draft.text === base) return;
  if (draft.base !== base) {
    localStorage.removeItem(draftKey());
    return;
  }
  const box = alert('warning', 'You have unsaved edits of this file from before. ');
  box.querySelector('.flex-grow-1').append(
    h('button', {
      class: 'btn btn-warning btn-sm ms-2', type: 'button', id: 'restore-draft',
      onclick: () => { setText(draft.text); box.remove(); },
    }, 'Restore them'),
    h('button', {
      class: 'btn btn-outline-secondary btn-sm ms-2', type: 'button',
      onclick: () => { localStorage.removeItem(draftKey()); box.remove(); },
    }, 'Discard them'));
}

async function save() {
  const text = view.state.doc.toString();
  try {
    await api('POST', '/api/save', { text, base });
    base = text;
    keepDraft(text);
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

const FIELDS = {
  network: ['name', 'bridge', 'ipv4', 'ipv6'],
  container: ['name', 'template', 'image', 'network', 'ipv4', 'ipv6', 'memory', 'cpus', 'root'],
};
const CHECKS = {
  network: [['nat4', 'ipv4_nat'], ['nat6', 'ipv6_nat']],
  container: [['docker', 'docker'], ['nested', 'nested'], ['autostart', 'autostart']],
};
/// Which field a line of the host file that starts with this word (a KDL
/// node, a TOML key) belongs to, for errors next to the field.
const FIELD_OF = {
  network: { bridge: 'bridge', ipv4: 'ipv4', ipv6: 'ipv6', nat: 'ipv4' },
  container: {
    from: 'template', image: 'image', network: 'network', forward: 'forwards', bind: 'binds',
    limits: 'memory', environment: 'environment', 'authorized-key': 'keys', ssh: 'keys',
    docker: 'docker', nested: 'nested', autostart: 'autostart', root: 'root',
  },
};

/// A form error: next to its field, announced, the field marked invalid.
class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

function clearErrors(kind) {
  for (const el of document.querySelectorAll(`#${kind}-form .is-invalid`)) el.classList.remove('is-invalid');
  for (const el of document.querySelectorAll(`#${kind}-form .invalid-feedback`)) el.textContent = '';
}

function showFieldError(id, message) {
  const field = $(id);
  const box = $(`${id}-error`);
  if (!field || !box) return false;
  field.classList.add('is-invalid');
  field.setAttribute('aria-describedby', `${id}-error`);
  box.textContent = message;
  return true;
}

async function refreshPicks() {
  const text = view.state.doc.toString();
  for (const kind of ['network', 'container', 'template', 'image']) {
    const answer = await api('POST', '/api/edit/read', { text, kind, name: '' });
    const names = answer.values.names;
    const pick = $(`${kind}-pick`);
    if (pick) fill(pick, h('option', { value: '' }, `New ${kind}`), names.map((n) => h('option', { value: n }, n)));
    for (const select of document.querySelectorAll(`select[data-names="${kind}"]`)) setChoices(select, names, select.value);
  }
}

/// The select's choices: none, the names there are, and `value` even if
/// the text has no such one (the validator says so).
function setChoices(select, names, value) {
  const all = names.includes(value) || !value ? names : [...names, value];
  fill(select, h('option', { value: '' }, 'none'), all.map((n) => h('option', { value: n, selected: n === value }, n)));
  select.value = value ?? '';
}

function fillForm(kind, form) {
  for (const f of FIELDS[kind]) {
    const field = $(`${kind}-${f}`);
    const value = form?.[f] ?? '';
    if (field.tagName === 'SELECT' && !field.dataset.names) {
      // Fixed choices (the root kinds): a value the vocabulary has not is
      // shown as written, for the validator to say what is wrong.
      if (![...field.options].some((o) => o.value === value)) field.append(h('option', { value }, value));
      field.value = value;
    } else if (field.tagName === 'SELECT') {
      setChoices(field, [...field.options].map((o) => o.value).filter(Boolean), value);
    } else {
      field.value = value;
    }
  }
  for (const [id, key] of CHECKS[kind]) $(`${kind}-${id}`).checked = key === 'autostart' ? (form?.[key] ?? true) : Boolean(form?.[key]);
  if (kind === 'container') {
    $('container-forwards').value = (form?.forwards ?? [])
      .map((f) => `${f.protocol} ${f.host} ${f.container}${f.loopback === false ? ' no-loopback' : ''}`)
      .join('\n');
    $('container-binds').value = (form?.binds ?? []).map((b) => [b.source, b.target, b.read_only ? 'read-only' : '', b.idmap ? 'idmap' : '']
      .filter(Boolean).join(' ')).join('\n');
    $('container-environment').value = (form?.environment ?? []).map((e) => `${e.name}=${e.value}`).join('\n');
    $('container-keys').value = (form?.authorized_keys ?? []).join('\n');
  }
  clearErrors(kind);
}

const lines = (id) => $(id).value.split('\n').map((l) => l.trim()).filter(Boolean);

function readForm(kind) {
  const values = {};
  for (const f of FIELDS[kind]) values[f] = $(`${kind}-${f}`).value.trim();
  for (const [id, key] of CHECKS[kind]) values[key] = $(`${kind}-${id}`).checked;
  if (kind === 'container') {
    values.forwards = lines('container-forwards').map((l) => {
      const [protocol, host, container, flag, extra] = l.split(/\s+/);
      const port = (p) => (/^\d+$/.test(p ?? '') && Number(p) <= 65535 ? Number(p) : NaN);
      const flagOk = flag === undefined || flag === 'no-loopback';
      if (!flagOk || extra !== undefined || Number.isNaN(port(host)) || Number.isNaN(port(container))) {
        throw new FieldError('container-forwards', `"${l}" is not a forward: write the protocol, the host port and the container port, e.g. "tcp 8080 80", and "no-loopback" to keep 127.0.0.1 and ::1 out`);
      }
      return { protocol, host: port(host), container: port(container), loopback: flag !== 'no-loopback' };
    });
    values.binds = lines('container-binds').map((l) => {
      const words = l.split(/\s+/);
      const flags = words.filter((w) => w === 'read-only' || w === 'idmap');
      const paths = words.filter((w) => !flags.includes(w));
      if (paths.length < 1 || paths.length > 2) {
        throw new FieldError('container-binds', `"${l}" is not a bind: write the host path, the container path if it differs, then read-only or idmap if wanted`);
      }
      return { source: paths[0], target: paths[1] ?? '', read_only: flags.includes('read-only'), idmap: flags.includes('idmap') };
    });
    values.environment = lines('container-environment').map((l) => {
      const at = l.indexOf('=');
      if (at < 1) throw new FieldError('container-environment', `"${l}" is not NAME=value`);
      return { name: l.slice(0, at), value: l.slice(at + 1) };
    });
    values.authorized_keys = lines('container-keys');
  }
  return values;
}

/// After a form changed the text: the validator's errors inside the
/// block of `name`, each next to the field its line belongs to.
async function errorsNextToFields(kind, name, text) {
  const answer = await api('POST', '/api/validate', { text });
  const source = text.split('\n');
  const start = source.findIndex((l) => new RegExp(`^\\s*(${kind}\\s+"${name}"|\\[${kind}\\.${name}[\\].])`).test(l));
  if (start < 0) return;
  for (const d of answer.diagnostics.filter((x) => x.severity === 'error' && !x.file.endsWith('.lock'))) {
    const line = source[d.line - 1] ?? '';
    if (d.line - 1 < start) continue;
    const word = line.trim().split(/[\s={]/)[0];
    const field = FIELD_OF[kind][word];
    if (field) showFieldError(`${kind}-${field}`, `${d.message}${d.help ? ` (${d.help})` : ''}`);
  }
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
      clearErrors(kind);
      try {
        const values = readForm(kind);
        if (!values.name) throw new FieldError(`${kind}-name`, 'Give it a name.');
        const answer = await api('POST', '/api/edit', { text: view.state.doc.toString(), kind, values });
        setText(answer.text);
        alert('info', `${kind[0].toUpperCase()}${kind.slice(1)} ${values.name} is in the editor now. Review the plan, then save.`);
        refreshPicks();
        await errorsNextToFields(kind, values.name, answer.text);
      } catch (err) {
        if (!(err instanceof FieldError) || !showFieldError(err.field, err.message)) showError(err);
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
          if (!u.docChanged) return;
          const text = u.state.doc.toString();
          markSaved(text === base);
          clearTimeout(draftTimer);
          draftTimer = setTimeout(() => keepDraft(text), 500);
        }),
        // Its accessible name, for screen readers.
        EditorView.contentAttributes.of({ 'aria-label': `The host file ${$('file-name').textContent.trim()}`, tabindex: '0' }),
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
  tabs(document.querySelector('[role="tablist"]'), (pane) => {
    if (pane !== 'plan-pane') refreshPicks().catch(showError);
  });
  forms();
  offerDraft();
  // Leaving with unsaved edits asks first.
  window.addEventListener('beforeunload', (e) => {
    if (view.state.doc.toString() !== base) {
      e.preventDefault();
      e.returnValue = '';
    }
  });
}
