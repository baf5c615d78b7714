// The page scripts of `ctm serve`. Each page's markup names it in
// <body data-page>; its module fills the page from the JSON API.
import './csp.js';
import 'bootstrap/dist/css/bootstrap.min.css';
import './app.css';
// Imported for its data API: the navbar toggler on narrow screens.
import 'bootstrap/js/src/collapse.js';

import { api } from './api.js';
import { dashboard } from './dashboard.js';
import { editor } from './editor.js';
import { applyPage } from './apply.js';
import { generations } from './generations.js';
import { images } from './images.js';
import { logs } from './logs.js';
import { topologies } from './topologies.js';
import { fleetPage } from './fleet.js';
import { followTheme } from './theme.js';
import { showError } from './dom.js';
import { watchConfirmation } from './confirm.js';

const pages = { dashboard, editor, apply: applyPage, generations, images, topologies, logs, fleet: fleetPage };

followTheme();

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('logout')?.addEventListener('click', async () => {
    await api('POST', '/logout').catch(() => {});
    window.location.href = '/login';
  });
  // Every page of the layout (the container page's script is a bundle
  // of its own: container.js); a server that shows a fleet only has no
  // host of its own to confirm.
  if (document.getElementById('confirm-banner') && document.body.dataset.hostFile) watchConfirmation();
  pages[document.body.dataset.page]?.().catch(showError);
});
