/**
 * "Compare selected runs": a `%compare <ids>` cell is inserted below the active cell of the
 * current notebook (or into a new notebook when none is open) and executed, so the
 * comparison widget appears where the user works and stays in the notebook as a record.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { NotebookActions, NotebookPanel, INotebookTracker } from '@jupyterlab/notebook';

const RUN_ID = /^[0-9a-f]{1,32}$/;

export function compareSource(runIds: string[], loadExtension: boolean): string {
  const ids = runIds.filter(id => RUN_ID.test(id)); // ids only: nothing else reaches the cell
  return `${loadExtension ? '%load_ext jupyter_mlops\n' : ''}%compare ${ids.join(' ')}`;
}

export async function openComparison(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  runIds: string[]
): Promise<NotebookPanel> {
  let panel = tracker.currentWidget;
  if (!panel) {
    panel = (await app.commands.execute('notebook:create-new', {})) as NotebookPanel;
  }
  await panel.context.ready;
  const notebook = panel.content;
  const model = notebook.model;
  if (!model) {
    throw new Error('The notebook has no model');
  }
  let loaded = false;
  for (let i = 0; i < model.cells.length; i++) {
    if (model.cells.get(i).sharedModel.getSource().includes('load_ext jupyter_mlops')) {
      loaded = true;
      break;
    }
  }
  const active = notebook.activeCell;
  const reuse = !!active && active.model.type === 'code' && active.model.sharedModel.getSource() === '';
  if (!reuse) {
    NotebookActions.insertBelow(notebook);
  }
  const cell = notebook.activeCell;
  if (!cell) {
    throw new Error('Could not add a cell to the notebook');
  }
  cell.model.sharedModel.setSource(compareSource(runIds, !loaded));
  app.shell.activateById(panel.id);
  await panel.sessionContext.ready;
  await NotebookActions.run(notebook, panel.sessionContext);
  return panel;
}
