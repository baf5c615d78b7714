// KDL 2 highlighting for CodeMirror (no KDL mode is published): node
// names, property names, strings (plain, multi-line and raw), numbers,
// keywords (#true, #false, #null, #inf, #nan), line, block and slash-dash
// comments.
const IDENT = /^[^\s\\/(){}[\];="#]+/;

export const kdl = {
  name: 'kdl',
  startState: () => ({ blockComment: 0, string: null, atNodeStart: true }),
  token(stream, state) {
    if (state.blockComment > 0) {
      while (!stream.eol()) {
        if (stream.match('/*')) state.blockComment += 1;
        else if (stream.match('*/')) state.blockComment -= 1;
        else stream.next();
        if (state.blockComment === 0) break;
      }
      return 'comment';
    }
    if (state.string) {
      // Inside a multi-line string: up to its closing quote(s).
      while (!stream.eol()) {
        if (stream.match(state.string)) { state.string = null; break; }
        if (stream.next() === '\\' && state.string === '"""') stream.next();
      }
      return 'string';
    }
    if (stream.sol()) state.atNodeStart = true;
    if (stream.eatSpace()) return null;
    if (stream.match('//')) { stream.skipToEnd(); return 'comment'; }
    if (stream.match('/*')) { state.blockComment = 1; return 'comment'; }
    if (stream.match('/-')) return 'comment';
    const raw = stream.match(/^(#+)"/);
    if (raw) {
      const close = `"${raw[1]}`;
      if (stream.skipTo(close)) { stream.match(close); } else { stream.skipToEnd(); }
      state.atNodeStart = false;
      return 'string';
    }
    if (stream.match('"""')) { state.string = '"""'; return 'string'; }
    if (stream.peek() === '"') {
      stream.next();
      let ch;
      while ((ch = stream.next()) != null) {
        if (ch === '\\') stream.next();
        else if (ch === '"') break;
      }
      const wasStart = state.atNodeStart;
      state.atNodeStart = false;
      return wasStart ? 'keyword' : 'string';
    }
    if (stream.match(/^#(true|false|null|inf|-inf|nan)\b/)) { state.atNodeStart = false; return 'atom'; }
    if (stream.match(/^[+-]?(0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*(\.[0-9_]+)?([eE][+-]?[0-9_]+)?)/)) {
      state.atNodeStart = false;
      return 'number';
    }
    const ch = stream.peek();
    if (ch === '{' || ch === '}' || ch === ';') {
      stream.next();
      state.atNodeStart = true;
      return 'bracket';
    }
    if (ch === '=') { stream.next(); return 'operator'; }
    if (ch === '(' || ch === ')') { stream.next(); return 'meta'; }
    if (stream.match(IDENT)) {
      if (stream.peek() === '=') return 'propertyName';
      const wasStart = state.atNodeStart;
      state.atNodeStart = false;
      return wasStart ? 'keyword' : 'string';
    }
    stream.next();
    return null;
  },
  languageData: { commentTokens: { line: '//', block: { open: '/*', close: '*/' } } },
};
