/**
 * The one place that talks to the server extension: every call goes through `requestAPI`,
 * which turns failures into `MlopsRequestError` carrying the HTTP status and the server's
 * message.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The API namespace of the server extension. */
export const API_NAMESPACE = 'jupyter-mlops/api';

export class MlopsRequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: unknown = null
  ) {
    super(message);
    this.name = 'MlopsRequestError';
  }

  /** The id asked for does not exist (HTTP 404). */
  get isNotFound(): boolean {
    return this.status === 404;
  }

  /** A promotion was refused by its gate. */
  get isGateFailure(): boolean {
    const body = this.body as { reason?: string } | null;
    return this.status === 400 && !!body && body.reason === 'gate';
  }
}

/** `?a=1&b=x` from the defined, non-empty values of `params`. */
export function queryString(
  params: Record<string, string | number | null | undefined>
): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === '') {
      continue;
    }
    parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/** Encode one path segment (a model or deployment name). */
export function segment(value: string): string {
  return encodeURIComponent(value);
}

/**
 * Call the server extension and return its JSON answer.
 *
 * @param endPoint path under `<base_url>/jupyter-mlops/api/`, with its query string
 * @param init fetch options (method, body)
 * @param settings the server connection settings (the app's, normally)
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_NAMESPACE, endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new MlopsRequestError(0, `Cannot reach the Jupyter server: ${String(error)}`);
  }
  const text = await response.text();
  let data: unknown = null;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message =
      data && typeof data === 'object' && typeof (data as any).message === 'string'
        ? (data as { message: string }).message
        : `${response.status} ${response.statusText}`;
    throw new MlopsRequestError(response.status, message, data);
  }
  return data as T;
}

/** POST `body` as JSON. */
export function postAPI<T>(
  endPoint: string,
  body: unknown,
  settings?: ServerConnection.ISettings
): Promise<T> {
  return requestAPI<T>(
    endPoint,
    { method: 'POST', body: JSON.stringify(body ?? {}) },
    settings
  );
}

/** The message of any error, for showing to the user. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}
