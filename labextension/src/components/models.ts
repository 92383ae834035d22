/**
 * Models: registered models with their versions, aliases and alias history; promote a
 * version to an alias (with an optional gate, as %register --promote --gate) or roll an
 * alias back to its previous holder.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';

import { MlopsModel } from '../model';
import { IRegisteredModel, IModelVersion } from '../tokens';
import { formatNumber, shortId } from '../format';
import { errorMessage } from '../request';
import { confirm, PromoteForm } from './dialogs';
import { button, h, replaceChildren } from './dom';
import { IActions, Section, emptyLine, errorLine } from './section';

const HISTORY_SHOWN = 5;

export class ModelsSection extends Section {
  constructor(model: MlopsModel, actions: IActions) {
    super(model, actions, 'models', 'Models');
    this.render();
  }

  reload(): Promise<void> {
    return this.model.refreshModels();
  }

  protected onExpand(): void {
    if (!this.model.modelsLoaded) {
      void this.model.refreshModels();
    }
    this.render();
  }

  render(): void {
    const model = this.model;
    this.setExtra(model.models.length ? String(model.models.length) : '');
    if (model.modelsError) {
      replaceChildren(this.body, errorLine(model.modelsError));
      return;
    }
    if (!model.models.length) {
      replaceChildren(
        this.body,
        emptyLine(model.modelsLoaded ? 'No registered models: use %register.' : 'Loading…')
      );
      return;
    }
    replaceChildren(this.body, ...model.models.map(m => this._model(m)));
  }

  private _model(registered: IRegisteredModel): HTMLElement {
    const aliases = Object.entries(registered.aliases).sort(([a], [b]) => a.localeCompare(b));
    return h(
      'div',
      { className: 'jp-mlops-model', attrs: { 'data-model': registered.name } },
      h('h4', { className: 'jp-mlops-model-name' }, registered.name),
      registered.problem ? h('div', { className: 'jp-mlops-note' }, registered.problem) : null,
      h(
        'ul',
        { className: 'jp-mlops-aliases', attrs: { 'aria-label': `Aliases of ${registered.name}` } },
        ...aliases.map(([alias, version]) =>
          h(
            'li',
            { className: 'jp-mlops-alias', attrs: { 'data-alias': alias } },
            h('span', { className: 'jp-mlops-chip' }, `@${alias}`),
            ` → v${version} `,
            button('Roll back', () => void this._rollback(registered.name, alias), {
              className: 'jp-mlops-small',
              title: `Move @${alias} back to the version that held it before v${version}`,
              attrs: { 'aria-label': `Roll back ${registered.name}@${alias}` }
            })
          )
        )
      ),
      h(
        'ul',
        { className: 'jp-mlops-versions', attrs: { 'aria-label': `Versions of ${registered.name}` } },
        ...registered.versions.map(v => this._version(registered, v))
      ),
      this._history(registered)
    );
  }

  private _version(registered: IRegisteredModel, version: IModelVersion): HTMLElement {
    const metrics = Object.entries(version.metrics)
      .map(([k, v]) => `${k}=${formatNumber(v)}`)
      .join('  ');
    return h(
      'li',
      { className: 'jp-mlops-version', attrs: { 'data-version': version.version } },
      h(
        'span',
        { className: 'jp-mlops-version-line' },
        h('b', {}, `v${version.version}`),
        ...version.aliases.map(a => h('span', { className: 'jp-mlops-chip' }, `@${a}`)),
        h('span', { className: 'jp-mlops-muted', title: version.run_id ?? '' }, ` run ${shortId(version.run_id)}`)
      ),
      metrics ? h('span', { className: 'jp-mlops-muted jp-mlops-metrics' }, metrics) : null,
      button('Promote…', () => void this._promote(registered, version), {
        className: 'jp-mlops-small jp-mlops-promote',
        title: `Point an alias of ${registered.name} at v${version.version}`,
        attrs: { 'aria-label': `Promote ${registered.name} v${version.version}` }
      })
    );
  }

  private _history(registered: IRegisteredModel): HTMLElement | null {
    if (!registered.history.length) {
      return null;
    }
    const shown = registered.history.slice(0, HISTORY_SHOWN);
    return h(
      'details',
      { className: 'jp-mlops-history' },
      h('summary', {}, `History (${registered.history.length})`),
      h(
        'ol',
        { className: 'jp-mlops-plain' },
        ...shown.map(e =>
          h(
            'li',
            {},
            h('span', { className: 'jp-mlops-muted' }, e.time.slice(0, 19).replace('T', ' ')),
            ` ${e.action} @${e.alias}: v${e.previous ?? '–'} → v${e.version ?? '–'} by ${e.user}`,
            e.gate?.expression ? ` (gate ${e.gate.expression})` : ''
          )
        )
      )
    );
  }

  private async _promote(registered: IRegisteredModel, version: IModelVersion): Promise<void> {
    const known = Object.keys(registered.aliases);
    const form = new PromoteForm(known, known.includes('champion') ? 'champion' : known[0] ?? '');
    const result = await showDialog({
      title: `Promote ${registered.name} v${version.version}`,
      body: form,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Promote' })],
      focusNodeSelector: 'input'
    });
    if (!result.button.accept || !result.value || !result.value.alias) {
      return;
    }
    const { alias, gate } = result.value;
    try {
      // The holder shown here is what the user decided against: if someone else moved the
      // alias meanwhile, the server refuses (409) instead of overwriting their promotion.
      const expected = registered.aliases[alias] ?? null;
      const event = await this.model.promote(
        registered.name,
        version.version,
        alias,
        gate,
        expected
      );
      Notification.success(
        `${registered.name}@${alias}: v${event.previous ?? '–'} → v${event.version}`,
        { autoClose: 4000 }
      );
    } catch (error) {
      Notification.error(errorMessage(error), { autoClose: false });
      void this.model.refreshModels(); // show who holds the alias now
    }
  }

  private async _rollback(name: string, alias: string): Promise<void> {
    const ok = await confirm(
      `Roll back ${name}@${alias}?`,
      `@${alias} will point at the version that held it before the current one.`,
      'Roll back'
    );
    if (!ok) {
      return;
    }
    try {
      const event = await this.model.rollback(name, alias);
      Notification.success(`${name}@${alias} rolled back to v${event.version}`, { autoClose: 4000 });
    } catch (error) {
      Notification.error(errorMessage(error), { autoClose: false });
    }
  }
}
