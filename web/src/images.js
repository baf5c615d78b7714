// The images page: the table is the server's (src/web/pages.rs); each
// row's Pull button starts a pull job and shows its progress (layers,
// bytes) under the table, each Remove button removes the image from the
// store, or shows why it may not (a container of the current generation
// is made from it).
import { api } from './api.js';
import { $, alert, showError } from './dom.js';
import { follow } from './jobs.js';

function buttons(disabled) {
  for (const b of document.querySelectorAll('#images button')) b.disabled = disabled;
}

export async function images() {
  for (const button of document.querySelectorAll('button[data-pull]')) {
    button.addEventListener('click', async () => {
      buttons(true);
      try {
        const { job } = await api('POST', `/api/images/${encodeURIComponent(button.dataset.pull)}/pull`);
        follow(job, $('image-progress'), () => buttons(false));
      } catch (e) {
        showError(e);
        buttons(false);
      }
    });
  }
  for (const button of document.querySelectorAll('button[data-remove]')) {
    button.addEventListener('click', async () => {
      const name = button.dataset.remove;
      if (!window.confirm(`Remove image ${name} from the image store?`)) return;
      buttons(true);
      try {
        const { removed } = await api('POST', `/api/images/${encodeURIComponent(name)}/remove`);
        alert('success', `Removed image ${name}: ${removed.join(', ')}.`);
        button.closest('tr')?.remove();
      } catch (e) {
        showError(e);
      }
      buttons(false);
    });
  }
}
