/**
 * The sidebar's state: what each section shows, fetched through `request.ts`, and the
 * actions the sections offer. Sections redraw on `changed`; nothing here touches the DOM.
 */
import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { errorMessage, postAPI, queryString, requestAPI, segment } from './request';
import {
  IAliasEvent,
  IDeployment,
  IDeployments,
  IExperiment,
  IMlopsModel,
  IPipelineRun,
  IPipelines,
  IRegisteredModel,
  IRunDetail,
  IRunsFilter,
  IRunsPage,
  IRunSummary,
  IStatus,
  Section
} from './tokens';

export const PAGE_SIZE = 50;
const RECOUNT_MS = 1500;

export class MlopsModel implements IMlopsModel {
  constructor(settings?: ServerConnection.ISettings) {
    this._settings = settings ?? ServerConnection.makeSettings();
  }

  get changed(): ISignal<IMlopsModel, Section> {
    return this._changed;
  }

  // -- state read by the sections ---------------------------------------------------
  status: IStatus | null = null;
  experiments: IExperiment[] = [];
  runs: IRunSummary[] = [];
  /** Runs matching the filter; null while the server is still counting. */
  runsTotal: number | null = 0;
  runsLoading = false;
  runsError: string | null = null;
  nextPageToken: string | null = null;
  filter: IRunsFilter = { experiment: '', text: '', where: '' };
  /** Milliseconds from the request to the first page's arrival (the Speed report). */
  lastRunsLatency: number | null = null;

  readonly selected = new Set<string>();
  expandedRun: string | null = null;
  readonly details = new Map<string, IRunDetail>();
  detailError: string | null = null;

  models: IRegisteredModel[] = [];
  modelsError: string | null = null;
  modelsLoaded = false;

  deployments: IDeployments | null = null;
  deploymentsError: string | null = null;

  pipelines: IPipelineRun[] = [];
  pipelinesMessage: string | null = null;
  pipelinesError: string | null = null;
  pipelinesLoaded = false;

  // -- runs ------------------------------------------------------------------------------
  /** Reload the first page of runs (and the experiments) with the current filter. */
  async refreshRuns(): Promise<void> {
    const ticket = ++this._runsTicket;
    window.clearTimeout(this._recount);
    this.runsLoading = true;
    this._changed.emit('runs');
    const started = performance.now();
    try {
      const page = await this._get<IRunsPage>(`runs${this._runsQuery(null)}`);
      if (ticket !== this._runsTicket) {
        return; // a newer request (another filter) won
      }
      this.lastRunsLatency = performance.now() - started;
      this.runs = page.runs;
      // Without a next page, what is shown is all there is, counted or not.
      this.runsTotal = page.total ?? (page.next_page_token ? null : page.runs.length);
      this.nextPageToken = page.next_page_token;
      this.runsError = null;
      if (page.stamp) {
        this._stamp = page.stamp;
      }
      if (this.runsTotal === null) {
        // The newest runs came first; the server is still counting. Ask again shortly.
        this._recount = window.setTimeout(() => void this.refreshRuns(), RECOUNT_MS);
      }
      const shown = new Set(this.runs.map(r => r.run_id));
      if (this.expandedRun && !shown.has(this.expandedRun)) {
        this.expandedRun = null;
      }
    } catch (error) {
      if (ticket !== this._runsTicket) {
        return;
      }
      this.runs = [];
      this.runsTotal = 0;
      this.nextPageToken = null;
      this.runsError = errorMessage(error);
    } finally {
      if (ticket === this._runsTicket) {
        this.runsLoading = false;
        this._changed.emit('runs');
      }
    }
    // After the runs, not beside them: both need the server's read of the store.
    await this._get<{ data: IExperiment[] }>('experiments')
      .then(reply => {
        this.experiments = reply.data;
        this._changed.emit('runs');
      })
      .catch(() => undefined); // the runs' own error says what is wrong
  }

  /** Append the next page of runs. */
  async loadMoreRuns(): Promise<void> {
    if (!this.nextPageToken || this.runsLoading) {
      return;
    }
    const ticket = ++this._runsTicket;
    this.runsLoading = true;
    this._changed.emit('runs');
    try {
      const page = await this._get<IRunsPage>(
        `runs${this._runsQuery(this.nextPageToken)}`
      );
      if (ticket === this._runsTicket) {
        const known = new Set(this.runs.map(r => r.run_id));
        this.runs = this.runs.concat(page.runs.filter(r => !known.has(r.run_id)));
        this.nextPageToken = page.next_page_token;
        this.runsTotal = page.total;
        this.runsError = null;
      }
    } catch (error) {
      if (ticket === this._runsTicket) {
        this.runsError = errorMessage(error);
      }
    } finally {
      if (ticket === this._runsTicket) {
        this.runsLoading = false;
        this._changed.emit('runs');
      }
    }
  }

  setFilter(change: Partial<IRunsFilter>): Promise<void> {
    this.filter = { ...this.filter, ...change };
    return this.refreshRuns();
  }

  toggleSelected(runId: string): void {
    if (this.selected.has(runId)) {
      this.selected.delete(runId);
    } else {
      this.selected.add(runId);
    }
    this._changed.emit('runs');
  }

  clearSelection(): void {
    this.selected.clear();
    this._changed.emit('runs');
  }

  /** Show (fetching if needed) or hide the details of one run. */
  async toggleDetails(runId: string): Promise<void> {
    if (this.expandedRun === runId) {
      this.expandedRun = null;
      this._changed.emit('details');
      return;
    }
    this.expandedRun = runId;
    this.detailError = null;
    this._changed.emit('details');
    if (!this.details.has(runId)) {
      await this._loadDetails(runId);
    }
  }

  private async _loadDetails(runId: string): Promise<void> {
    try {
      const detail = await this._get<IRunDetail>(`runs/${segment(runId)}`);
      this.details.set(runId, detail);
    } catch (error) {
      if (this.expandedRun === runId) {
        this.detailError = errorMessage(error);
      }
    }
    if (this.expandedRun === runId) {
      this._changed.emit('details');
    }
  }

  // -- models ----------------------------------------------------------------------------
  async refreshModels(): Promise<void> {
    try {
      this.models = (await this._get<{ data: IRegisteredModel[] }>('models')).data;
      this.modelsError = null;
    } catch (error) {
      this.modelsError = errorMessage(error);
    }
    this.modelsLoaded = true;
    this._changed.emit('models');
  }

  /**
   * Point `alias` of `model` at `version` if it passes `gate` and `alias` still points at
   * `expected` (null: unset; undefined: not checked). Errors propagate (409: it moved).
   */
  async promote(
    model: string,
    version: string,
    alias: string,
    gate: string,
    expected?: string | null
  ): Promise<IAliasEvent> {
    const body: Record<string, unknown> = { version, alias, gate: gate || null };
    if (expected !== undefined) {
      body.expected = expected;
    }
    const event = await postAPI<IAliasEvent>(
      `models/${segment(model)}/promote`,
      body,
      this._settings
    );
    this._forgetDetails();
    await this.refreshModels();
    return event;
  }

  /** Move `alias` of `model` back to its previous holder (errors propagate). */
  async rollback(model: string, alias: string): Promise<IAliasEvent> {
    const event = await postAPI<IAliasEvent>(
      `models/${segment(model)}/rollback`,
      { alias },
      this._settings
    );
    await this.refreshModels();
    return event;
  }

  // -- deployments -----------------------------------------------------------------------
  async refreshDeployments(): Promise<void> {
    try {
      this.deployments = await this._get<IDeployments>('deployments');
      this.deploymentsError = null;
    } catch (error) {
      this.deploymentsError = errorMessage(error);
    }
    this._changed.emit('deployments');
  }

  async stopDeployment(name: string): Promise<IDeployment> {
    const stopped = await postAPI<IDeployment>(
      `deployments/${segment(name)}/stop`,
      {},
      this._settings
    );
    await this.refreshDeployments();
    return stopped;
  }

  // -- pipelines -------------------------------------------------------------------------
  async refreshPipelines(): Promise<void> {
    try {
      const reply = await this._get<IPipelines>('pipelines');
      this.pipelines = reply.runs;
      this.pipelinesMessage = reply.message;
      this.pipelinesError = null;
    } catch (error) {
      this.pipelinesError = errorMessage(error);
    }
    this.pipelinesLoaded = true;
    this._changed.emit('pipelines');
  }

  // -- everything ------------------------------------------------------------------------
  /** Reload every section. */
  async refresh(): Promise<void> {
    this._forgetDetails();
    await Promise.all([
      this.refreshRuns(),
      this.refreshModels(),
      this.refreshDeployments(),
      this.refreshPipelines()
    ]);
  }

  /**
   * Ask the server whether the tracking store changed since the runs were read (a cheap
   * call) and reload runs and models if so. Returns whether anything was reloaded.
   */
  async checkForChanges(): Promise<boolean> {
    let status: IStatus;
    try {
      status = await this._get<IStatus>('status');
    } catch {
      return false;
    }
    this.status = status;
    if (this._stamp !== null && status.stamp === this._stamp) {
      return false;
    }
    this._stamp = status.stamp;
    this._forgetDetails();
    await Promise.all([this.refreshRuns(), this.refreshModels()]);
    return true;
  }

  /** Drop cached details (the store changed); the open run's are fetched again. */
  private _forgetDetails(): void {
    this.details.clear();
    if (this.expandedRun) {
      void this._loadDetails(this.expandedRun);
    }
  }

  private _runsQuery(pageToken: string | null): string {
    return queryString({
      limit: PAGE_SIZE,
      experiment: this.filter.experiment,
      text: this.filter.text.trim(),
      where: this.filter.where.trim(),
      page_token: pageToken
    });
  }

  private _get<T>(endPoint: string): Promise<T> {
    return requestAPI<T>(endPoint, {}, this._settings);
  }

  private _settings: ServerConnection.ISettings;
  private _changed = new Signal<IMlopsModel, Section>(this);
  private _runsTicket = 0;
  private _stamp: string | null = null;
  private _recount = 0;
}
