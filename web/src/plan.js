// A plan as `ctm plan` computes it (docs/plan.md): the summary, the files
// with their reasons and diffs, the actions in order with their reasons.
import { h, diffBlock } from './dom.js';

const CHANGE = {
  add: ['+', 'success'],
  change: ['~', 'warning'],
  destroy: ['-', 'danger'],
};

export function ownerLabel(owner) {
  return owner.name === undefined ? owner.kind : `${owner.kind} ${owner.name}`;
}

// Root file systems of removed containers that ctm keeps (docs/plan.md,
// "Removed containers and --prune"); deleting them is for the CLI.
function keptRootfs(plan) {
  const kept = plan.kept_rootfs ?? [];
  if (kept.length === 0) {
    return null;
  }
  return h('p', { class: 'small text-body-secondary plan-kept' },
    'Kept: the root file systems of containers no longer in the host file: ',
    kept.map((k) => `${k.name} (${k.path})`).join(', '),
    '. ', h('code', {}, 'ctm apply --prune'), ' deletes them.');
}

// Kinds of link the host file uses that the running kernel cannot make
// (an apply is refused), and those whose support was not checked.
function linkKinds(plan) {
  const out = [];
  const unsupported = plan.unsupported_links ?? [];
  for (const n of unsupported) {
    out.push(h('div', { class: 'alert alert-danger py-2 small mb-2 plan-unsupported' },
      'The running kernel cannot make ', h('code', {}, n.kind), ` links (${n.links.join(', ')}): ${n.reason}`));
  }
  if (unsupported.length > 0) {
    out.push(h('p', { class: 'small text-danger' },
      'Nothing will be applied; ', h('code', {}, 'ctm info'), ' lists the kinds this kernel has.'));
  }
  for (const n of plan.unchecked_links ?? []) {
    out.push(h('p', { class: 'small text-body-secondary plan-unchecked' },
      'Kernel support not checked for ', h('code', {}, n.kind), ` links (${n.links.join(', ')}): ${n.reason}.`));
  }
  return out;
}

export function renderPlan(plan) {
  const s = plan.summary;
  const from = plan.from_generation ?? 'none';
  const parts = [
    h('div', { class: 'd-flex flex-wrap gap-2 align-items-center mb-2 plan-summary' },
      h('span', { class: 'badge text-bg-success' }, `${s.add} to add`),
      h('span', { class: 'badge text-bg-warning' }, `${s.change} to change`),
      h('span', { class: 'badge text-bg-danger' }, `${s.destroy} to destroy`),
      h('span', { class: 'badge text-bg-secondary' }, `${s.actions} action${s.actions === 1 ? '' : 's'}`),
      h('span', { class: 'small text-body-secondary' }, `host on generation ${from}`)),
  ];
  if (plan.files.length === 0 && plan.actions.length === 0 && plan.conflicts.length === 0) {
    parts.push(h('p', { class: 'mb-0 text-success', id: 'no-changes' }, 'No changes. The host matches the host file.'));
    parts.push(...linkKinds(plan));
    parts.push(keptRootfs(plan));
    return h('div', { class: 'plan' }, parts);
  }
  for (const c of plan.conflicts) {
    parts.push(h('div', { class: 'alert alert-danger py-2 small mb-2' },
      h('code', {}, c.path), ' — ', c.reason));
  }
  if (plan.conflicts.length > 0) {
    parts.push(h('p', { class: 'small text-danger' }, 'Nothing will be applied until the conflicts are resolved.'));
  }
  parts.push(...linkKinds(plan));
  if (plan.files.length > 0) {
    parts.push(h('h2', { class: 'h6 mt-3' }, 'Files'));
    parts.push(h('div', { class: 'list-group mb-3 plan-files' }, plan.files.map((f) => {
      const [sign, colour] = CHANGE[f.change] ?? ['?', 'secondary'];
      return h('details', { class: 'list-group-item py-1' },
        h('summary', { class: 'small' },
          h('span', { class: `badge text-bg-${colour} me-2 font-monospace` }, sign),
          h('code', { class: 'text-break' }, f.path),
          h('span', { class: 'text-body-secondary' }, ` (${ownerLabel(f.owner)}; ${f.reason})`)),
        f.diff ? diffBlock(f.diff) : null);
    })));
  }
  if (plan.actions.length > 0) {
    parts.push(h('h2', { class: 'h6' }, 'Actions, in order'));
    parts.push(h('ol', { class: 'small plan-actions' }, plan.actions.map((a) => h('li', {},
      h('span', { class: a.action === 'remove-rootfs' ? 'fw-semibold text-danger' : 'fw-semibold' }, a.summary),
      h('div', { class: 'text-body-secondary' }, 'because ', a.reason)))));
    if (!plan.live_system) {
      parts.push(h('p', { class: 'small text-warning-emphasis' },
        'Not performed: the root is not the running system, so ctm manages files only.'));
    }
  }
  if (plan.provisioning.length > 0) {
    parts.push(h('p', { class: 'small' }, 'Provisioning steps to check, for: ', plan.provisioning.join(', ')));
  }
  parts.push(keptRootfs(plan));
  return h('div', { class: 'plan' }, parts);
}
