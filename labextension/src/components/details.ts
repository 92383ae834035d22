/** The details of one run: params, metrics, models, data, the cell's source, its notebook. */
import { IRunDetail } from '../tokens';
import { formatBytes, formatNumber, formatTime, shortId } from '../format';
import { Child, button, h, keyValues, statusBadge } from './dom';
import { IActions } from './section';

/** The verdict badge of `%reproduce`, coloured as run statuses are. */
export function verdictBadge(verdict: string): HTMLSpanElement {
  const tone: Record<string, string> = { REPRODUCED: 'finished', DIFFERENT: 'pending' };
  return h(
    'span',
    {
      className: `jp-mlops-status jp-mlops-status-${tone[verdict] ?? 'failed'} jp-mlops-verdict`,
      title: 'Verdict of %reproduce'
    },
    verdict.toLowerCase()
  );
}

/** Whether the run reproduces: its verdict, by which run and when, or how to find out. */
function reproduction(run: IRunDetail): Child {
  const done = run.reproduction;
  if (done) {
    const when = done.at ? formatTime(Date.parse(done.at)) : '';
    return h(
      'span',
      { className: 'jp-mlops-reproduction' },
      verdictBadge(done.verdict),
      done.run_id ? ' by ' : '',
      done.run_id ? h('code', { title: done.run_id }, shortId(done.run_id)) : '',
      when ? ` at ${when}` : ''
    );
  }
  if (run.reproduces) {
    return h(
      'span',
      { className: 'jp-mlops-reproduction' },
      'reproduction of ',
      h('code', { title: run.reproduces }, shortId(run.reproduces))
    );
  }
  return h(
    'span',
    { className: 'jp-mlops-reproduction jp-mlops-muted', title: 'Run this in a notebook or terminal' },
    'never checked: ',
    // two words, so a narrow panel breaks the line between them, not inside one
    h('code', {}, '%reproduce'),
    ' ',
    h('code', { title: run.run_id }, shortId(run.run_id))
  );
}

function block(title: string, ...content: Child[]): HTMLElement {
  return h('div', { className: 'jp-mlops-detail-block' }, h('h4', {}, title), ...content);
}

export function renderRunDetails(run: IRunDetail, actions: IActions): HTMLElement {
  const notebook: Child = run.notebook_path
    ? button(run.notebook, () => actions.openNotebook(run.notebook_path as string), {
        className: 'jp-mlops-link jp-mlops-open-notebook',
        title: `Open ${run.notebook_path}`
      })
    : run.notebook
      ? h('span', { title: 'Not inside the folder Jupyter serves' }, run.notebook)
      : '–';
  const parts: Child[] = [
    keyValues([
      ['run', h('code', {}, run.run_id)],
      ['name', run.run_name || '–'],
      ['experiment', run.experiment ?? run.experiment_id],
      ['status', statusBadge(run.status)],
      ['started', formatTime(run.start_time)],
      ['user', run.user ?? '–'],
      ['notebook', notebook],
      [
        'git',
        run.git_commit
          ? `${shortId(run.git_commit, 10)}${run.git_dirty === 'true' ? ' (dirty)' : ''}`
          : '–'
      ],
      ['reproduced', reproduction(run)]
    ])
  ];
  const params = Object.entries(run.params);
  if (params.length) {
    parts.push(block('Params', keyValues(params.map(([k, v]) => [k, v]))));
  }
  const metrics = Object.entries(run.metrics);
  if (metrics.length) {
    parts.push(block('Metrics', keyValues(metrics.map(([k, v]) => [k, formatNumber(v, 6)]))));
  }
  if (run.models.length || run.registered_versions.length) {
    parts.push(
      block(
        'Model',
        h(
          'ul',
          { className: 'jp-mlops-plain' },
          ...run.models.map(m => h('li', {}, h('b', {}, m.name), ' ', h('code', {}, m.uri))),
          ...run.registered_versions.map(v => h('li', {}, `registered as ${v.name} v${v.version}`))
        )
      )
    );
  }
  if (run.data.length || run.datasets.length) {
    parts.push(
      block(
        'Data',
        h(
          'ul',
          { className: 'jp-mlops-plain' },
          ...run.data.map(d =>
            h('li', {}, h('code', {}, d.path), ` md5 ${shortId(d.md5, 12)} · ${formatBytes(d.size)}`)
          ),
          ...run.datasets.map(d =>
            h('li', {}, `dataset ${d.name} · ${shortId(d.content_hash ?? d.digest, 12)}`)
          )
        )
      )
    );
  }
  const tags = Object.entries(run.tags);
  if (tags.length) {
    parts.push(block('Tags', keyValues(tags.map(([k, v]) => [k, v]))));
  }
  if (run.source) {
    parts.push(block('Cell source', h('pre', { className: 'jp-mlops-source' }, run.source)));
  }
  return h(
    'div',
    { className: 'jp-mlops-details', attrs: { role: 'region', 'aria-label': `Details of run ${run.run_name || run.run_id}` } },
    ...parts
  );
}
