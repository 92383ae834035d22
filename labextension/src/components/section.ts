/**
 * A collapsible section of the sidebar: a header button (aria-expanded) and a body that
 * the subclass draws from the model.
 */
import { Widget } from '@lumino/widgets';

import { MlopsModel } from '../model';
import { Section as SectionName } from '../tokens';
import { Child, button, h, replaceChildren } from './dom';

/** What the sections ask of the application. */
export interface IActions {
  openNotebook(path: string): void;
  compare(runIds: string[]): Promise<void>;
}

export abstract class Section extends Widget {
  constructor(
    protected readonly model: MlopsModel,
    protected readonly actions: IActions,
    readonly name: SectionName,
    title: string,
    expanded = true
  ) {
    super();
    this.addClass('jp-mlops-section');
    this.addClass(`jp-mlops-section-${name}`);
    this.id = `jp-mlops-section-${name}`;
    const bodyId = `${this.id}-body`;
    this._toggle = h(
      'button',
      {
        className: 'jp-mlops-section-toggle',
        attrs: { type: 'button', 'aria-controls': bodyId },
        on: { click: () => this.setExpanded(!this._expanded) }
      },
      h('span', { className: 'jp-mlops-caret', attrs: { 'aria-hidden': 'true' } }),
      h('span', { className: 'jp-mlops-section-title' }, title)
    );
    this._extra = h('span', { className: 'jp-mlops-section-extra' });
    this.body = h('div', {
      className: 'jp-mlops-section-body',
      attrs: { id: bodyId, role: 'region', 'aria-label': title }
    });
    this.node.appendChild(
      h(
        'div',
        { className: 'jp-mlops-section-header' },
        h('h3', { className: 'jp-mlops-section-heading' }, this._toggle),
        this._extra,
        button('⟳', () => void this.reload(), {
          className: 'jp-mlops-icon-button',
          title: `Refresh ${title}`,
          attrs: { 'aria-label': `Refresh ${title}` }
        })
      )
    );
    this.node.appendChild(this.body);
    // Applied without onExpand: the subclass's fields do not exist yet.
    this._expanded = expanded;
    this._applyExpanded();
    model.changed.connect((_, which) => {
      if (this.listensTo(which)) {
        this.render();
      }
    });
  }

  get expanded(): boolean {
    return this._expanded;
  }

  setExpanded(expanded: boolean): void {
    if (expanded === this._expanded) {
      return;
    }
    this._expanded = expanded;
    this._applyExpanded();
    if (expanded) {
      this.onExpand();
    }
  }

  private _applyExpanded(): void {
    this._toggle.setAttribute('aria-expanded', String(this._expanded));
    this.toggleClass('jp-mod-expanded', this._expanded);
    this.body.hidden = !this._expanded;
  }

  /** Fetch this section's data again. */
  abstract reload(): Promise<void>;

  /** Redraw the body from the model. */
  abstract render(): void;

  /** Called when the section opens: load it the first time. */
  protected onExpand(): void {
    this.render();
  }

  protected listensTo(which: SectionName): boolean {
    return which === this.name;
  }

  /** A short text beside the section's title (counts, "updated..."). */
  protected setExtra(...children: Child[]): void {
    replaceChildren(this._extra, ...children);
  }

  protected readonly body: HTMLDivElement;
  private _toggle: HTMLButtonElement;
  private _extra: HTMLSpanElement;
  private _expanded: boolean;
}

/** An error line (text only). */
export function errorLine(message: string): HTMLElement {
  return h('div', { className: 'jp-mlops-error', attrs: { role: 'alert' } }, message);
}

/** A muted line for empty states. */
export function emptyLine(message: string): HTMLElement {
  return h('div', { className: 'jp-mlops-empty' }, message);
}
