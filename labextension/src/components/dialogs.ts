/** The forms of the sidebar's dialogs (promote an alias) and a confirm helper. */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { h } from './dom';

export interface IPromoteValue {
  alias: string;
  gate: string;
}

/** Alias (a known one or a new name) and an optional gate over the version's metrics. */
export class PromoteForm extends Widget implements Dialog.IBodyWidget<IPromoteValue> {
  constructor(aliases: string[], suggested: string) {
    super();
    this.addClass('jp-mlops-form');
    const listId = 'jp-mlops-alias-options';
    this._alias = h('input', {
      className: 'jp-mod-styled jp-mlops-alias-input',
      attrs: { type: 'text', list: listId, 'aria-label': 'Alias', placeholder: 'champion' }
    });
    this._alias.value = suggested;
    this._gate = h('input', {
      className: 'jp-mod-styled jp-mlops-gate-input',
      attrs: { type: 'text', 'aria-label': 'Gate (optional)', placeholder: 'accuracy >= 0.9' }
    });
    this.node.append(
      h('label', {}, 'Alias', this._alias),
      h('datalist', { attrs: { id: listId } }, ...aliases.map(a => h('option', { attrs: { value: a } }))),
      h('label', {}, 'Gate over the run\'s metrics (optional)', this._gate)
    );
  }

  getValue(): IPromoteValue {
    return { alias: this._alias.value.trim(), gate: this._gate.value.trim() };
  }

  protected onAfterAttach(): void {
    this._alias.focus();
    this._alias.select();
  }

  private _alias: HTMLInputElement;
  private _gate: HTMLInputElement;
}

/** Ask a yes/no question; resolves true on accept. */
export async function confirm(title: string, body: string, label: string): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
  });
  return result.button.accept;
}
