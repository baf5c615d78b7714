// The pages follow the system's light or dark theme (Bootstrap 5.3's
// data-bs-theme), and change with it.
const query = window.matchMedia('(prefers-color-scheme: dark)');

function apply() {
  document.documentElement.setAttribute('data-bs-theme', query.matches ? 'dark' : 'light');
}

export function followTheme() {
  apply();
  query.addEventListener('change', apply);
}
