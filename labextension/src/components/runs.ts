/**
 * Runs: experiments and their runs, newest first, one page at a time; filter by text or
 * by a metric condition; select runs to compare; open one for its details.
 */
import { MlopsModel } from '../model';
import { Section as SectionName } from '../tokens';
import { formatAgo, formatNumber, shortId } from '../format';
import { renderRunDetails, verdictBadge } from './details';
import { button, h, replaceChildren, statusBadge } from './dom';
import { IActions, Section, emptyLine, errorLine } from './section';

const TEXT_DEBOUNCE_MS = 300;

export class RunsSection extends Section {
  constructor(model: MlopsModel, actions: IActions) {
    super(model, actions, 'runs', 'Runs');
    this._experiment = h('select', {
      className: 'jp-mod-styled jp-mlops-experiment',
      attrs: { 'aria-label': 'Experiment' },
      on: { change: () => void this.model.setFilter({ experiment: this._experiment.value }) }
    });
    this._text = h('input', {
      className: 'jp-mod-styled jp-mlops-filter-text',
      attrs: { type: 'search', placeholder: 'Filter runs by text', 'aria-label': 'Filter runs by text' },
      on: {
        input: () => {
          window.clearTimeout(this._debounce);
          this._debounce = window.setTimeout(
            () => void this.model.setFilter({ text: this._text.value }),
            TEXT_DEBOUNCE_MS
          );
        }
      }
    });
    this._where = h('input', {
      className: 'jp-mod-styled jp-mlops-filter-where',
      title: 'A condition over metrics and params, as in %compare --where',
      attrs: {
        type: 'text',
        placeholder: 'metrics.accuracy >= 0.9',
        'aria-label': 'Filter runs by metric condition (press Enter)'
      },
      on: {
        keydown: (event: KeyboardEvent) => {
          if (event.key === 'Enter') {
            void this.model.setFilter({ where: this._where.value });
          }
        },
        change: () => void this.model.setFilter({ where: this._where.value })
      }
    });
    this._compare = button('Compare', () => void this._openComparison(), {
      className: 'jp-mlops-compare',
      title: 'Open %compare of the selected runs in the current notebook'
    });
    this._clear = button('Clear', () => this.model.clearSelection(), {
      title: 'Clear the selection'
    });
    this._summary = h('span', { className: 'jp-mlops-summary', attrs: { 'aria-live': 'polite' } });
    this._list = h('ul', { className: 'jp-mlops-runs', attrs: { 'aria-label': 'Runs' } });
    this._more = h('div', { className: 'jp-mlops-more' });
    this.body.appendChild(
      h('div', { className: 'jp-mlops-toolbar' }, this._experiment, this._text, this._where)
    );
    this.body.appendChild(
      h('div', { className: 'jp-mlops-actions' }, this._summary, this._compare, this._clear)
    );
    this.body.appendChild(this._list);
    this.body.appendChild(this._more);
    this.render();
  }

  reload(): Promise<void> {
    return this.model.refreshRuns();
  }

  protected listensTo(which: SectionName): boolean {
    return which === 'runs' || which === 'details';
  }

  render(): void {
    const model = this.model;
    this._renderExperiments();
    const count = model.selected.size;
    this._compare.disabled = count < 2;
    this._compare.textContent = count ? `Compare (${count})` : 'Compare';
    this._clear.disabled = count === 0;
    const shown = model.runs.length;
    const total = model.runsTotal;
    this._summary.textContent =
      model.runsLoading && !shown
        ? 'Loading runs…'
        : total === null
          ? `${shown.toLocaleString()}${model.nextPageToken ? '+' : ''} runs`
          : `${shown.toLocaleString()} of ${total.toLocaleString()} runs`;
    this.setExtra(total ? String(total) : '');

    const rows: HTMLElement[] = [];
    if (model.runsError) {
      rows.push(errorLine(model.runsError));
    } else if (!shown && !model.runsLoading) {
      rows.push(emptyLine('No runs yet: run a cell with %%track.'));
    }
    for (const run of model.runs) {
      const expanded = model.expandedRun === run.run_id;
      const label = run.run_name || shortId(run.run_id);
      const metrics = Object.entries(run.metrics)
        .map(([k, v]) => `${k}=${formatNumber(v)}`)
        .join('  ');
      const checkbox = h('input', {
        className: 'jp-mlops-select',
        attrs: { type: 'checkbox', 'aria-label': `Select run ${label} for comparison` },
        on: { change: () => this.model.toggleSelected(run.run_id) }
      });
      checkbox.checked = model.selected.has(run.run_id);
      const open = h(
        'button',
        {
          className: 'jp-mlops-run-open',
          title: `Run ${run.run_id}${run.notebook ? ` from ${run.notebook}` : ''}`,
          attrs: {
            type: 'button',
            'aria-expanded': String(expanded),
            'data-run-id': run.run_id
          },
          on: { click: () => void this.model.toggleDetails(run.run_id) }
        },
        h(
          'span',
          { className: 'jp-mlops-run-line' },
          h('span', { className: 'jp-mlops-run-name' }, label),
          statusBadge(run.status),
          run.reproduced ? verdictBadge(run.reproduced) : null,
          h('span', { className: 'jp-mlops-muted' }, formatAgo(run.start_time))
        ),
        h(
          'span',
          { className: 'jp-mlops-run-line jp-mlops-muted' },
          h('span', { className: 'jp-mlops-run-exp' }, run.experiment ?? ''),
          metrics ? h('span', { className: 'jp-mlops-metrics' }, metrics) : null
        ),
        run.data
          ? h('span', { className: 'jp-mlops-run-line jp-mlops-data', title: 'Data read by the run' }, `data ${run.data}`)
          : null
      );
      const item = h(
        'li',
        {
          className: `jp-mlops-run${expanded ? ' jp-mod-expanded' : ''}`,
          attrs: { 'data-run-id': run.run_id }
        },
        h('div', { className: 'jp-mlops-run-row' }, checkbox, open)
      );
      if (expanded) {
        item.appendChild(this._details(run.run_id));
      }
      rows.push(item);
    }
    replaceChildren(this._list, ...rows);
    replaceChildren(
      this._more,
      model.nextPageToken
        ? button(model.runsLoading ? 'Loading…' : 'Load more', () => void this.model.loadMoreRuns(), {
            disabled: model.runsLoading,
            className: 'jp-mlops-load-more'
          })
        : null
    );
  }

  private _details(runId: string): HTMLElement {
    const detail = this.model.details.get(runId);
    if (detail) {
      return renderRunDetails(detail, this.actions);
    }
    if (this.model.detailError) {
      return errorLine(this.model.detailError);
    }
    return h('div', { className: 'jp-mlops-empty' }, 'Loading details…');
  }

  private _renderExperiments(): void {
    const current = this.model.filter.experiment;
    const options = [h('option', { attrs: { value: '' } }, 'All experiments')];
    for (const exp of this.model.experiments) {
      options.push(
        h('option', { attrs: { value: exp.experiment_id } }, `${exp.name} (${exp.runs})`)
      );
    }
    replaceChildren(this._experiment, ...options);
    this._experiment.value = current;
  }

  private async _openComparison(): Promise<void> {
    const ids = this.model.runs
      .map(r => r.run_id)
      .filter(id => this.model.selected.has(id));
    // Keep selected runs from other pages or filters too, in selection order after these.
    for (const id of this.model.selected) {
      if (!ids.includes(id)) {
        ids.push(id);
      }
    }
    await this.actions.compare(ids);
  }

  private _experiment: HTMLSelectElement;
  private _text: HTMLInputElement;
  private _where: HTMLInputElement;
  private _compare: HTMLButtonElement;
  private _clear: HTMLButtonElement;
  private _summary: HTMLSpanElement;
  private _list: HTMLUListElement;
  private _more: HTMLDivElement;
  private _debounce = 0;
}
