/**
 * A tiny DOM builder. Strings become text nodes and attributes are set one by one, so
 * whatever the server sends (run names, params, tags, cell source) is shown as text and
 * never parsed as HTML. Nothing in the sidebar uses innerHTML.
 */

export type Child = Node | string | number | null | undefined | false;

export interface IAttrs {
  className?: string;
  title?: string;
  /** Plain attributes: role, aria-*, data-*, type, placeholder, tabindex... */
  attrs?: Record<string, string | number | boolean | null | undefined>;
  on?: Partial<{ [K in keyof HTMLElementEventMap]: (event: HTMLElementEventMap[K]) => void }>;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  options: IAttrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (options.className) {
    node.className = options.className;
  }
  if (options.title) {
    node.title = options.title;
  }
  for (const [name, value] of Object.entries(options.attrs ?? {})) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const [type, listener] of Object.entries(options.on ?? {})) {
    node.addEventListener(type, listener as EventListener);
  }
  append(node, ...children);
  return node;
}

/** Append children (strings as text nodes). */
export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    parent.appendChild(
      child instanceof Node ? child : document.createTextNode(String(child))
    );
  }
}

/** Replace the children of `parent`. */
export function replaceChildren(parent: HTMLElement, ...children: Child[]): void {
  while (parent.firstChild) {
    parent.removeChild(parent.firstChild);
  }
  append(parent, ...children);
}

/** A keyboard-accessible button (a real <button>, so Enter and Space work). */
export function button(
  label: Child,
  onClick: (event: MouseEvent) => void,
  options: { className?: string; title?: string; disabled?: boolean; attrs?: IAttrs['attrs'] } = {}
): HTMLButtonElement {
  const node = h(
    'button',
    {
      className: `jp-mlops-button ${options.className ?? ''}`.trim(),
      title: options.title,
      attrs: { type: 'button', ...(options.attrs ?? {}) },
      on: { click: onClick }
    },
    label
  );
  node.disabled = !!options.disabled;
  return node;
}

/** A two-column key/value table. */
export function keyValues(
  rows: [string, Child][],
  className = 'jp-mlops-kv'
): HTMLTableElement {
  const body = h('tbody');
  for (const [key, value] of rows) {
    body.appendChild(h('tr', {}, h('th', { attrs: { scope: 'row' } }, key), h('td', {}, value)));
  }
  return h('table', { className }, body);
}

/** A status badge whose class follows the status (FINISHED, FAILED, running...). */
export function statusBadge(status: string | null | undefined): HTMLSpanElement {
  const text = (status ?? 'unknown').toLowerCase();
  return h(
    'span',
    { className: `jp-mlops-status jp-mlops-status-${text.replace(/[^a-z]/g, '')}` },
    text
  );
}
