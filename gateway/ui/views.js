// Small helpers that build the page: elements (never from HTML strings, so nothing a job holds
// is ever parsed as markup) and the formats of times, sizes and CIDs.

/**
 * An element: `h('a', {href: '#/jobs', class: 'x'}, 'text', child, …)`. Attributes named `on…`
 * are event listeners; `null`, `undefined` and `false` children are left out.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces the children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A state or acceptance badge. */
export function badge(text, kind = text) {
  return h('span', { class: `badge badge-${kind}`, dataset: { value: text } }, text.replaceAll('_', ' '));
}

/** A `<dl>` of label/value pairs; pairs with an empty value are left out. */
export function facts(pairs) {
  return h('dl', { class: 'facts' },
    pairs.filter(([, value]) => value !== null && value !== undefined && value !== '')
      .map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]));
}

/** A table with a header row; `rows` are arrays of cells, or `{cells, attributes}`. */
export function table(headings, rows, attributes = {}) {
  return h('table', attributes,
    h('thead', {}, h('tr', {}, headings.map((heading) => h('th', {}, heading)))),
    h('tbody', {}, rows.map((row) => {
      const { cells, attributes: rowAttributes } = Array.isArray(row) ? { cells: row, attributes: {} } : row;
      return h('tr', rowAttributes, cells.map((cell) => h('td', {}, cell)));
    })));
}

/** A CID shortened for tables, whole in its title and copied on click. */
export function cid(value) {
  if (!value) return '';
  const text = String(value);
  const short = text.length > 20 ? `${text.slice(0, 10)}…${text.slice(-6)}` : text;
  return h('code', {
    class: 'cid',
    title: `${text} (click to copy)`,
    onclick: () => navigator.clipboard?.writeText(text),
  }, short);
}

/** `2026-12-06 14:03:05` in local time. */
export function time(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `350 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
}

/** `3 s ago` from a time in ms. */
export function ago(ms) {
  return ms ? `${duration(Math.max(0, Date.now() - ms))} ago` : '';
}

/** `1.4 MiB`. */
export function bytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** `12,345,678`. */
export function count(n) {
  return n === null || n === undefined ? '' : Number(n).toLocaleString('en-US');
}

/** A message box: `kind` is `error`, `info` or `warn`. */
export function notice(kind, ...children) {
  return h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, children);
}
