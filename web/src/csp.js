// The pages' Content-Security-Policy allows no inline style: only
// <style> elements that carry the response's nonce (docs/web.md). Two
// libraries style themselves at run time: xterm.js adds <style> elements
// for its theme and cell size, and sets a `style` attribute on cells with
// 24-bit colours. So that they work without loosening the policy, every
// <style> element made by a script gets the nonce, and a `style`
// attribute set by a script goes through the CSSOM (element.style), which
// the policy does not govern. Imported first, before any library runs.
const nonce = document.querySelector('meta[name="csp-nonce"]')?.content ?? '';

const createElement = Document.prototype.createElement;
Document.prototype.createElement = function createWithNonce(tag, options) {
  const el = createElement.call(this, tag, options);
  if (nonce && String(tag).toLowerCase() === 'style') el.setAttribute('nonce', nonce);
  return el;
};

const setAttribute = Element.prototype.setAttribute;
Element.prototype.setAttribute = function setStyleThroughCssom(name, value) {
  if (String(name).toLowerCase() === 'style' && this.style) {
    this.style.cssText = String(value);
    return;
  }
  setAttribute.call(this, name, value);
};
