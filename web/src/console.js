// The console tab: xterm.js over the WebSocket of
// GET /api/containers/NAME/console (src/web/console.rs). The handshake
// carries the session's CSRF token as the `csrf` parameter (a browser
// cannot add headers to it); binary frames are the terminal's bytes, a
// text frame resizes it. Closing it, or leaving the page, ends the shell:
// the server kills it and everything it started.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import '@xterm/xterm/css/xterm.css';

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? '';

export function openConsole(name, box, openButton, closeButton) {
  let socket = null;
  let term = null;
  const close = () => {
    socket?.close();
    socket = null;
    openButton.disabled = false;
    closeButton.disabled = true;
  };
  openButton.addEventListener('click', () => {
    openButton.disabled = true;
    closeButton.disabled = false;
    if (!term) {
      term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 13, screenReaderMode: false });
      const fit = new FitAddon();
      term.loadAddon(fit);
      term.open(box);
      fit.fit();
      window.addEventListener('resize', () => fit.fit());
      term.onData((data) => socket?.readyState === WebSocket.OPEN && socket.send(new TextEncoder().encode(data)));
      term.onResize(({ cols, rows }) => socket?.readyState === WebSocket.OPEN
        && socket.send(JSON.stringify({ resize: [cols, rows] })));
      // For the browser tests: what the terminal shows.
      window.ctmTerminal = term;
    }
    term.reset();
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const query = new URLSearchParams({ csrf: csrf(), cols: term.cols, rows: term.rows });
    socket = new WebSocket(`${scheme}://${window.location.host}/api/containers/${encodeURIComponent(name)}/console?${query}`);
    socket.binaryType = 'arraybuffer';
    socket.addEventListener('message', (e) => {
      if (typeof e.data === 'string') {
        const control = JSON.parse(e.data);
        if ('exit' in control) term.write(`\r\n[the shell ended: exit status ${control.exit ?? 'unknown'}]\r\n`);
        if ('error' in control) term.write(`\r\n[${control.error}]\r\n`);
        return;
      }
      term.write(new Uint8Array(e.data));
    });
    socket.addEventListener('close', (e) => {
      if (socket && e.code !== 1000 && e.code !== 1005) term.write(`\r\n[the connection closed (${e.code})]\r\n`);
      close();
    });
    term.focus();
  });
  closeButton.addEventListener('click', close);
  window.addEventListener('pagehide', close);
}
