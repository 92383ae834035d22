/** Pipelines: runs of notebook pipelines with per-step status and the executed notebooks. */
import { MlopsModel } from '../model';
import { IPipelineRun, IPipelineStep } from '../tokens';
import { formatDuration, formatTime } from '../format';
import { button, h, replaceChildren, statusBadge } from './dom';
import { IActions, Section, emptyLine, errorLine } from './section';

export class PipelinesSection extends Section {
  constructor(model: MlopsModel, actions: IActions) {
    super(model, actions, 'pipelines', 'Pipelines', false);
    this.render();
  }

  reload(): Promise<void> {
    return this.model.refreshPipelines();
  }

  protected onExpand(): void {
    if (!this.model.pipelinesLoaded) {
      void this.model.refreshPipelines();
    }
    this.render();
  }

  render(): void {
    const { pipelines, pipelinesError, pipelinesLoaded, pipelinesMessage } = this.model;
    this.setExtra(pipelines.length ? String(pipelines.length) : '');
    if (pipelinesError) {
      replaceChildren(this.body, errorLine(pipelinesError));
      return;
    }
    if (!pipelines.length) {
      const empty = pipelinesMessage ?? 'No pipeline runs yet: use %pipeline run.';
      replaceChildren(this.body, emptyLine(pipelinesLoaded ? empty : 'Loading…'));
      return;
    }
    replaceChildren(
      this.body,
      // A damaged run record is named (path and fix) above the others.
      pipelinesMessage ? h('div', { className: 'jp-mlops-note' }, pipelinesMessage) : null,
      h('ul', { className: 'jp-mlops-pipelines' }, ...pipelines.map(p => this._run(p)))
    );
  }

  private _run(run: IPipelineRun): HTMLElement {
    const elapsed = run.started && run.ended ? (run.ended - run.started) / 1000 : null;
    return h(
      'li',
      { className: 'jp-mlops-pipeline', attrs: { 'data-pipeline-run': run.run_id } },
      h(
        'div',
        { className: 'jp-mlops-run-line' },
        h('b', {}, run.pipeline ?? run.run_id),
        statusBadge(run.status),
        h('span', { className: 'jp-mlops-muted' }, `${formatTime(run.started)} · ${formatDuration(elapsed)}`)
      ),
      h('ol', { className: 'jp-mlops-steps' }, ...run.steps.map(s => this._step(s)))
    );
  }

  private _step(step: IPipelineStep): HTMLElement {
    return h(
      'li',
      { className: 'jp-mlops-step' },
      h('span', { className: 'jp-mlops-step-name' }, step.name),
      statusBadge(step.status),
      step.seconds !== null ? h('span', { className: 'jp-mlops-muted' }, formatDuration(step.seconds)) : null,
      step.executed_path
        ? button('executed notebook', () => this.actions.openNotebook(step.executed_path as string), {
            className: 'jp-mlops-link',
            title: `Open ${step.executed_path}`
          })
        : step.executed
          ? h(
              'span',
              {
                className: 'jp-mlops-muted jp-mlops-path',
                title: step.executed_hidden
                  ? 'Jupyter does not open files under dot-folders: start it with --ContentsManager.allow_hidden=True'
                  : 'Outside the folder Jupyter serves'
              },
              step.executed
            )
          : null,
      step.error ? h('div', { className: 'jp-mlops-error' }, step.error) : null
    );
  }
}
