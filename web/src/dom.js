// Building DOM from data. Every value goes in as text (textContent or an
// attribute), never as HTML, so nothing the host file or the system says
// can become markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (id) => document.getElementById(id);

/// A dismissable Bootstrap alert at the top of the page.
export function alert(kind, message, help) {
  const box = h('div', { class: `alert alert-${kind} d-flex align-items-start gap-2`, role: 'alert' },
    h('div', { class: 'flex-grow-1' }, message, help ? h('div', { class: 'small mt-1' }, help) : null),
    h('button', { type: 'button', class: 'btn-close', 'aria-label': 'Close', onclick: () => box.remove() }));
  $('alerts')?.prepend(box);
  return box;
}

export function showError(e) {
  alert('danger', e.message || String(e), e.data?.help);
}

export const muted = (text) => h('span', { class: 'text-body-secondary small' }, text);

export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/// A unified diff, each line coloured by its first character.
export function diffBlock(text) {
  return h('pre', { class: 'diff small mb-0', tabindex: '0' }, text.split('\n').map((line) => {
    let cls = '';
    if (line.startsWith('+++') || line.startsWith('---')) cls = 'diff-file';
    else if (line.startsWith('+')) cls = 'diff-add';
    else if (line.startsWith('-')) cls = 'diff-del';
    else if (line.startsWith('@@')) cls = 'diff-hunk';
    return h('span', { class: cls }, line, '\n');
  }));
}
