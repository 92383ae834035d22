/**
 * The "MLOps" sidebar: a header and the four sections. While the panel is visible it polls
 * (every POLL_MS) a cheap status call to notice runs written elsewhere and, when the
 * Deployments section is open, the deployments' live figures; hidden, it polls nothing.
 */
import { Message } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

import { MlopsModel } from '../model';
import { DeploymentsSection } from './deployments';
import { button, h } from './dom';
import { ModelsSection } from './models';
import { PipelinesSection } from './pipelines';
import { RunsSection } from './runs';
import { IActions } from './section';

export const POLL_MS = 5000;

export class MlopsPanel extends Panel {
  constructor(
    readonly model: MlopsModel,
    actions: IActions
  ) {
    super();
    this.id = 'jupyter-mlops-sidebar';
    this.addClass('jp-mlops-panel');
    this.title.caption = 'MLOps';
    const header = new Widget({
      node: h(
        'div',
        { className: 'jp-mlops-header' },
        h('h2', { className: 'jp-mlops-title' }, 'MLOps'),
        button('⟳', () => void model.refresh(), {
          className: 'jp-mlops-icon-button',
          title: 'Refresh everything',
          attrs: { 'aria-label': 'Refresh the MLOps sidebar' }
        })
      )
    });
    this.runs = new RunsSection(model, actions);
    this.models = new ModelsSection(model, actions);
    this.deployments = new DeploymentsSection(model, actions);
    this.pipelines = new PipelinesSection(model, actions);
    for (const widget of [header, this.runs, this.models, this.deployments, this.pipelines]) {
      this.addWidget(widget);
    }
  }

  readonly runs: RunsSection;
  readonly models: ModelsSection;
  readonly deployments: DeploymentsSection;
  readonly pipelines: PipelinesSection;

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    if (!this._loaded) {
      this._loaded = true;
      for (const section of [this.runs, this.models, this.deployments, this.pipelines]) {
        if (section.expanded) {
          void section.reload();
        }
      }
    } else {
      void this.model.checkForChanges();
    }
    this._schedule();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    window.clearTimeout(this._timer);
    this._timer = 0;
  }

  dispose(): void {
    window.clearTimeout(this._timer);
    super.dispose();
  }

  private _schedule(): void {
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this._tick(), POLL_MS);
  }

  private async _tick(): Promise<void> {
    if (!this.isVisible || this.isDisposed) {
      return;
    }
    if (document.visibilityState !== 'hidden') {
      const work: Promise<unknown>[] = [this.model.checkForChanges()];
      if (this.deployments.expanded) {
        work.push(this.model.refreshDeployments());
      }
      await Promise.all(work);
    }
    if (this.isVisible && !this.isDisposed) {
      this._schedule();
    }
  }

  private _loaded = false;
  private _timer = 0;
}
