/**
 * The shapes the server extension answers (see jupyter_mlops/server/openapi.yaml) and
 * the token through which other extensions can reach the sidebar's model.
 */
import { Token } from '@lumino/coreutils';
import { ISignal } from '@lumino/signaling';

export interface IStatus {
  version: string;
  project_root: string;
  served_root: string;
  tracking_uri: string;
  stamp: string;
  features: { serving: boolean; monitoring: boolean; pipelines: boolean };
}

export interface IExperiment {
  experiment_id: string;
  name: string;
  runs: number;
  last_run_time: number | null;
}

export interface IRunSummary {
  run_id: string;
  run_name: string;
  experiment: string | null;
  experiment_id: string | null;
  status: string | null;
  start_time: number | null;
  duration: number | null;
  metrics: Record<string, number>;
  metric_count: number;
  data: string | null;
  notebook: string | null;
  models: string[];
  /** The verdict of the run's last `%reproduce`; null when never reproduced. */
  reproduced: string | null;
}

export interface IRunsPage {
  runs: IRunSummary[];
  next_page_token: string | null;
  /** Null when the newest page was served before the server finished counting. */
  total: number | null;
  stamp: string | null;
}

export interface IDataSnapshot {
  path: string;
  md5: string;
  size: number;
  nfiles: number;
}

export interface IRunDetail {
  run_id: string;
  run_name: string;
  experiment_id: string;
  experiment: string | null;
  status: string;
  start_time: number | null;
  end_time: number | null;
  user: string | null;
  params: Record<string, string>;
  metrics: Record<string, number | null>;
  tags: Record<string, string>;
  models: { name: string; uri: string }[];
  registered_versions: { name: string; version: string }[];
  data: IDataSnapshot[];
  datasets: { name: string; digest: string; content_hash: string | null }[];
  source: string | null;
  source_sha256: string | null;
  notebook: string | null;
  notebook_path: string | null;
  git_commit: string | null;
  git_dirty: string | null;
  /** The run's last `%reproduce`; null when never reproduced. */
  reproduction: IReproduction | null;
  /** For a reproduction: the run it reproduces. */
  reproduces: string | null;
}

/** What `%reproduce` recorded on a run (tags mlops.reproduced, .by, .at). */
export interface IReproduction {
  verdict: string;
  /** The reproducing run; null when it could not be tracked. */
  run_id: string | null;
  /** ISO 8601, UTC. */
  at: string | null;
}

export interface IModelVersion {
  version: string;
  run_id: string | null;
  aliases: string[];
  metrics: Record<string, number>;
  created: number | null;
}

export interface IAliasEvent {
  model: string;
  alias: string;
  version: string | null;
  previous: string | null;
  action: string;
  time: string;
  user: string;
  notebook: string | null;
  git_commit: string | null;
  gate: { expression?: string; passed?: boolean } | null;
  comparison: { summary?: string } | null;
}

export interface IRegisteredModel {
  name: string;
  aliases: Record<string, string>;
  versions: IModelVersion[];
  history: IAliasEvent[];
  /** Why part of this model cannot be used or read here (shown, never hidden). */
  problem?: string | null;
}

export interface IFigures {
  rps?: number | null;
  p99_ms?: number | null;
  error_rate?: number | null;
  drift_share?: number | null;
  requests?: number | null;
  /** Why a figure is absent, by name. */
  notes?: Record<string, string>;
  window?: string | null;
  error?: string;
}

/** Performance of one model version and role over the window (predictions joined to
 * outcomes): counts, label coverage (0-1), the task's scores, estimates, business metrics. */
export interface IVersionPerformance {
  model_version: string;
  role: string;
  n_predictions?: number | null;
  n_labelled?: number | null;
  coverage?: number | null;
  delay_s_median?: number | null;
  [figure: string]: string | number | null | undefined;
}

export interface IPerformance {
  deployment?: string;
  window?: string;
  task?: 'classification' | 'regression';
  /** The headline score: accuracy, or rmse for regressors. */
  metric?: string;
  /** Names of the business metrics (each also as `<name>_per_1k`). */
  business?: string[];
  versions: IVersionPerformance[];
  notes?: Record<string, string>;
  error?: string;
}

export interface IModelRef {
  name: string | null;
  version: string | null;
  uri: string;
}

export interface IDeployment {
  name: string;
  status: string;
  url: string;
  pid: number | null;
  workers: number;
  primary: IModelRef;
  canary: IModelRef | null;
  canary_weight: number;
  traffic: Record<string, number>;
  started_at: number | null;
  stopped_at: number | null;
  uptime: number | null;
  figures: IFigures | null;
  performance?: IPerformance | null;
}

export interface IDeployments {
  available: boolean;
  monitoring?: boolean;
  message: string | null;
  deployments: IDeployment[];
}

export interface IPipelineStep {
  name: string;
  status: string | null;
  started: number | null;
  ended: number | null;
  seconds: number | null;
  error: string | null;
  mlflow_run_id: string | null;
  metrics: Record<string, number>;
  notebook: string | null;
  notebook_path: string | null;
  executed: string | null;
  /** The path to open in JupyterLab; null when outside the served folder or hidden. */
  executed_path: string | null;
  /** Under a dot-folder (.mlops/) that Jupyter's contents API does not open. */
  executed_hidden: boolean;
}

export interface IPipelineRun {
  run_id: string;
  pipeline: string | null;
  status: string | null;
  started: number | null;
  ended: number | null;
  params: Record<string, unknown>;
  mlflow_run_id: string | null;
  steps: IPipelineStep[];
}

export interface IPipelines {
  available: boolean;
  message: string | null;
  runs: IPipelineRun[];
}

/** The filters of the Runs section. */
export interface IRunsFilter {
  experiment: string;
  text: string;
  where: string;
}

export type Section = 'runs' | 'details' | 'models' | 'deployments' | 'pipelines';

/** The sidebar's state and actions; `changed` tells which section to redraw. */
export interface IMlopsModel {
  readonly changed: ISignal<IMlopsModel, Section>;
  readonly runs: ReadonlyArray<IRunSummary>;
  readonly selected: ReadonlySet<string>;
  refresh(): Promise<void>;
  refreshRuns(): Promise<void>;
}

export const IMlopsModel = new Token<IMlopsModel>(
  'jupyter-mlops:IMlopsModel',
  'The MLOps sidebar model: runs, models, deployments and pipelines of the project.'
);
