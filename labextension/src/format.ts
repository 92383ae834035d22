/** Text formatting of numbers, times and ids for the sidebar. */

export function formatNumber(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return '–';
  }
  if (Number.isInteger(value) && Math.abs(value) < 1e6) {
    return String(value);
  }
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) {
    return value.toExponential(2);
  }
  return Number(value.toPrecision(digits)).toString();
}

export function formatPercent(value: number | null | undefined): string {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return '–';
  }
  return `${Number((value * 100).toPrecision(3))}%`;
}

/** "3 min ago", "2 d ago", or a date for older times. */
export function formatAgo(epochMs: number | null | undefined, now = Date.now()): string {
  if (!epochMs) {
    return '';
  }
  const seconds = Math.max(0, (now - epochMs) / 1000);
  if (seconds < 60) {
    return `${Math.floor(seconds)} s ago`;
  }
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)} min ago`;
  }
  if (seconds < 86400) {
    return `${Math.floor(seconds / 3600)} h ago`;
  }
  if (seconds < 30 * 86400) {
    return `${Math.floor(seconds / 86400)} d ago`;
  }
  return new Date(epochMs).toISOString().slice(0, 10);
}

export function formatTime(epochMs: number | null | undefined): string {
  if (!epochMs) {
    return '–';
  }
  return new Date(epochMs).toLocaleString();
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) {
    return '–';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 120) {
    return `${seconds.toFixed(1)} s`;
  }
  if (seconds < 7200) {
    return `${Math.round(seconds / 60)} min`;
  }
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function formatBytes(size: number | null | undefined): string {
  if (size === null || size === undefined) {
    return '–';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

export function shortId(id: string | null | undefined, length = 8): string {
  return id ? id.slice(0, length) : '';
}

/** "acc=0.95 f1=0.94" from a metrics object. */
export function metricsText(metrics: Record<string, number | null>, limit = 4): string {
  return Object.entries(metrics)
    .slice(0, limit)
    .map(([key, value]) => `${key}=${formatNumber(value)}`)
    .join('  ');
}
