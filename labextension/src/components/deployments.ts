/**
 * Deployments: running model servers with health, traffic split, requests/s, p99 latency,
 * error rate and drift; refreshed by the panel while this section is visible; stop one.
 */
import { Notification } from '@jupyterlab/apputils';

import { MlopsModel } from '../model';
import { IDeployment, IFigures, IPerformance, IVersionPerformance } from '../tokens';
import { formatNumber, formatPercent } from '../format';
import { errorMessage } from '../request';
import { confirm } from './dialogs';
import { Child, button, h, keyValues, replaceChildren, statusBadge } from './dom';
import { IActions, Section, emptyLine, errorLine } from './section';

const ACTIVE = new Set(['running', 'starting', 'dead']);

export class DeploymentsSection extends Section {
  constructor(model: MlopsModel, actions: IActions) {
    super(model, actions, 'deployments', 'Deployments');
    this.render();
  }

  reload(): Promise<void> {
    return this.model.refreshDeployments();
  }

  protected onExpand(): void {
    void this.model.refreshDeployments();
    this.render();
  }

  render(): void {
    const { deployments, deploymentsError } = this.model;
    if (deploymentsError) {
      replaceChildren(this.body, errorLine(deploymentsError));
      return;
    }
    if (!deployments) {
      replaceChildren(this.body, emptyLine('Loading…'));
      return;
    }
    const running = deployments.deployments.filter(d => d.status === 'running').length;
    this.setExtra(deployments.deployments.length ? `${running} running` : '');
    if (!deployments.available) {
      replaceChildren(this.body, emptyLine(deployments.message ?? 'Serving is not available.'));
      return;
    }
    const items = deployments.deployments.map(d => this._deployment(d));
    replaceChildren(
      this.body,
      deployments.message ? h('div', { className: 'jp-mlops-note' }, deployments.message) : null,
      items.length ? h('ul', { className: 'jp-mlops-deployments' }, ...items) : emptyLine('No deployments: use %deploy.')
    );
  }

  private _deployment(dep: IDeployment): HTMLElement {
    const traffic = Object.entries(dep.traffic)
      .map(([label, share]) => `${label} ${formatNumber(share, 3)}%`)
      .join(' · ');
    const figures = dep.figures;
    const rows: [string, Child][] = [['traffic', traffic || '–']];
    if (figures && !figures.error) {
      const notes = figures.notes ?? {};
      const figure = (key: string, text: string | null): Child =>
        text !== null
          ? text
          : h('span', { className: 'jp-mlops-muted', title: notes[key] ?? 'not available' }, 'n/a');
      const value = (key: keyof IFigures): number | null => {
        const v = figures[key];
        return typeof v === 'number' ? v : null;
      };
      const rps = value('rps');
      const p99 = value('p99_ms');
      const errors = value('error_rate');
      const drift = value('drift_share');
      rows.push(
        ['requests/s', figure('rps', rps === null ? null : formatNumber(rps, 3))],
        ['p99 latency', figure('p99_ms', p99 === null ? null : `${formatNumber(p99, 3)} ms`)],
        ['error rate', figure('error_rate', errors === null ? null : formatPercent(errors))],
        ['drift', figure('drift_share', drift === null ? null : driftText(drift))]
      );
    } else if (figures?.error) {
      rows.push(['figures', figures.error]);
    } else if (dep.status === 'running') {
      rows.push(['figures', 'monitoring not available']);
    }
    return h(
      'li',
      { className: 'jp-mlops-deployment', attrs: { 'data-deployment': dep.name } },
      h(
        'div',
        { className: 'jp-mlops-run-line' },
        h('b', {}, dep.name),
        statusBadge(dep.status),
        h('span', { className: 'jp-mlops-muted' }, dep.url),
        ACTIVE.has(dep.status)
          ? button('Stop', () => void this._stop(dep.name), {
              className: 'jp-mlops-small',
              attrs: { 'aria-label': `Stop deployment ${dep.name}` }
            })
          : null
      ),
      keyValues(rows),
      performanceTable(dep.performance)
    );
  }

  private async _stop(name: string): Promise<void> {
    if (!(await confirm(`Stop ${name}?`, `The server of ${name} will be stopped.`, 'Stop'))) {
      return;
    }
    try {
      await this.model.stopDeployment(name);
      Notification.success(`Deployment ${name} stopped`, { autoClose: 4000 });
    } catch (error) {
      Notification.error(errorMessage(error), { autoClose: false });
    }
  }
}

/** Performance per model version and role: the headline score (accuracy or RMSE) with
 * the estimate and its band when there is one, label coverage, and business metrics. Shown
 * once the deployment has outcomes (nothing before). */
export function performanceTable(perf: IPerformance | null | undefined): HTMLElement | null {
  if (!perf || !perf.versions || perf.versions.length === 0) {
    return null;
  }
  const metric = perf.metric ?? 'accuracy';
  const business = perf.business ?? [];
  const head = ['version', metric, 'labels', ...business];
  const number = (row: IVersionPerformance, key: string): number | null => {
    const v = row[key];
    return typeof v === 'number' ? v : null;
  };
  const score = (row: IVersionPerformance): string => {
    const realised = number(row, metric);
    const text = realised === null ? 'n/a' : formatNumber(realised, 3);
    const estimate = number(row, `estimated_${metric}`);
    if (estimate === null) {
      return text;
    }
    const low = number(row, `estimated_${metric}_low`);
    const high = number(row, `estimated_${metric}_high`);
    const band =
      low !== null && high !== null ? ` [${formatNumber(low, 3)}, ${formatNumber(high, 3)}]` : '';
    return `${text} (est. ${formatNumber(estimate, 3)}${band})`;
  };
  const rows = perf.versions.map(row =>
    h(
      'tr',
      {
        className: 'jp-mlops-performance-row',
        attrs: { 'data-version': String(row.model_version), 'data-role': String(row.role) }
      },
      h('td', {}, `v${row.model_version} ${row.role}`),
      h('td', { className: 'jp-mlops-performance-score' }, score(row)),
      h(
        'td',
        {
          className: 'jp-mlops-performance-coverage',
          title: `${formatNumber(number(row, 'n_labelled'))} labelled of ${formatNumber(
            number(row, 'n_predictions')
          )} predicted rows`
        },
        formatPercent(number(row, 'coverage'))
      ),
      ...business.map(name => {
        const per1k = number(row, `${name}_per_1k`);
        return h(
          'td',
          { title: per1k === null ? '' : `${formatNumber(per1k, 3)} per 1k labelled` },
          formatNumber(number(row, name), 3)
        );
      })
    )
  );
  return h(
    'table',
    {
      className: 'jp-mlops-performance',
      attrs: { 'aria-label': `Performance per model version (${perf.window ?? ''})` }
    },
    h('thead', {}, h('tr', {}, ...head.map(text => h('th', {}, text)))),
    h('tbody', {}, ...rows)
  );
}

function driftText(share: number): string {
  const verdict = share >= 0.5 ? 'drifting' : share > 0 ? 'some drift' : 'no drift';
  return `${verdict} (${formatPercent(share)} of features)`;
}
