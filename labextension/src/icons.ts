import { LabIcon } from '@jupyterlab/ui-components';

/** The sidebar's icon: a small pipeline of three nodes (theme-coloured via jp-icon3). */
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <circle cx="5" cy="6" r="3"/>
    <circle cx="5" cy="18" r="3"/>
    <circle cx="19" cy="12" r="3"/>
    <path d="M7.6 7.2l8.6 3.6-.8 1.8-8.6-3.6zM7.6 16.8l8.6-3.6-.8-1.8-8.6 3.6z"/>
  </g>
</svg>`;

export const mlopsIcon = new LabIcon({ name: 'jupyter-mlops:sidebar', svgstr });
