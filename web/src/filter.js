// Search and filter for a list: rows whose text holds every word typed,
// and that the state filter lets through, stay shown.
export function filterRows(rows, text, keep) {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  for (const row of rows) {
    const haystack = row.textContent.toLowerCase();
    const on = words.every((w) => haystack.includes(w)) && keep(row);
    row.classList.toggle('d-none', !on);
    if (on) shown += 1;
  }
  return shown;
}
