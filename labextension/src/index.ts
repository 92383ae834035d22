/**
 * jupyter-mlops for JupyterLab: the "MLOps" sidebar (runs, models, deployments, pipelines),
 * its palette commands, and a listener that refreshes the runs when a %%track cell ends.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';

import { openComparison } from './compare';
import { MlopsPanel } from './components/panel';
import { mlopsIcon } from './icons';
import { MlopsModel } from './model';
import { errorMessage } from './request';
import { IMlopsModel } from './tokens';

export * from './tokens';

export namespace CommandIDs {
  export const open = 'jupyter-mlops:open';
  export const refresh = 'jupyter-mlops:refresh';
  export const compare = 'jupyter-mlops:compare-selected';
}

/** Sidebar rank: below the file browser, running sessions, TOC and extension manager. */
const RANK = 600;
const TRACK_MAGIC = /^\s*%%track\b/;

const plugin: JupyterFrontEndPlugin<IMlopsModel> = {
  id: 'jupyter-mlops:plugin',
  description: 'The MLOps sidebar: runs, models, deployments and pipelines of the project.',
  autoStart: true,
  requires: [IDocumentManager, INotebookTracker],
  optional: [ILayoutRestorer, ICommandPalette],
  provides: IMlopsModel,
  activate: (
    app: JupyterFrontEnd,
    docManager: IDocumentManager,
    notebooks: INotebookTracker,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): IMlopsModel => {
    const model = new MlopsModel(app.serviceManager.serverSettings);
    const compare = async (runIds: string[]): Promise<void> => {
      if (runIds.length < 2) {
        Notification.warning('Select at least two runs to compare.', { autoClose: 3000 });
        return;
      }
      try {
        await openComparison(app, notebooks, runIds);
      } catch (error) {
        Notification.error(`Could not open the comparison: ${errorMessage(error)}`);
      }
    };
    const panel = new MlopsPanel(model, {
      openNotebook: path => void docManager.openOrReveal(path),
      compare
    });
    panel.title.icon = mlopsIcon;
    app.shell.add(panel, 'left', { rank: RANK });
    if (restorer) {
      restorer.add(panel, 'jupyter-mlops-sidebar');
    }

    app.commands.addCommand(CommandIDs.open, {
      label: 'MLOps: Open sidebar',
      caption: 'Show runs, models, deployments and pipelines',
      icon: mlopsIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'MLOps: Refresh',
      caption: 'Reload every section of the MLOps sidebar',
      execute: () => model.refresh()
    });
    app.commands.addCommand(CommandIDs.compare, {
      label: 'MLOps: Compare selected runs',
      isEnabled: () => model.selected.size >= 2,
      execute: () => compare([...model.selected])
    });
    if (palette) {
      for (const command of [CommandIDs.open, CommandIDs.refresh, CommandIDs.compare]) {
        palette.addItem({ command, category: 'MLOps' });
      }
    }

    // A %%track cell that finished has written a run: show it without a reload.
    NotebookActions.executed.connect((_, { cell }) => {
      if (cell.model.type !== 'code') {
        return;
      }
      if (!TRACK_MAGIC.test(cell.model.sharedModel.getSource())) {
        return;
      }
      if (panel.isVisible) {
        void model.refreshRuns();
        if (panel.models.expanded) {
          void model.refreshModels();
        }
      } // hidden: the panel asks whether the store changed when it is shown again
    });
    return model;
  }
};

export default plugin;
