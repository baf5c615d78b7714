// Tabs (the markup of pages.rs `tabs` and `pane`): a click or the arrow,
// Home and End keys select a tab and show its pane, as the WAI-ARIA tabs
// pattern has it; only the selected tab is in the tab order.
import { $ } from './dom.js';

export function tabs(list, onSelect) {
  const all = [...list.querySelectorAll('[role="tab"]')];
  const select = (tab, focus) => {
    for (const other of all) {
      const on = other === tab;
      other.classList.toggle('active', on);
      other.setAttribute('aria-selected', String(on));
      other.tabIndex = on ? 0 : -1;
      $(other.dataset.tab).classList.toggle('d-none', !on);
    }
    if (focus) tab.focus();
    onSelect?.(tab.dataset.tab);
  };
  for (const tab of all) {
    tab.addEventListener('click', () => select(tab, false));
    tab.addEventListener('keydown', (e) => {
      const at = all.indexOf(tab);
      const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: all.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      select(all[(to + all.length) % all.length], true);
    });
  }
}
