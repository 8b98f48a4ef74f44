import { formatTable } from '@relp/report';
import { buildTask, TASKS, toJsonl } from '@relp/tasks';
import type { CliIo } from '../io.js';

/** `relp tasks`: lists the tasks, or prints one task's pairs as JSONL (`relp tasks ioi --n 5`). */
export function tasksCommand(
  name: string | undefined,
  o: { n?: number; seed?: number; corruption?: string; order?: string; json?: boolean },
  io: CliIo,
): void {
  if (name === undefined) {
    if (o.json) {
      io.stdout.write(`${JSON.stringify(TASKS, null, 1)}\n`);
      return;
    }
    io.stdout.write(
      `${formatTable({
        header: ['task', 'prompts', 'corruptions', 'description'],
        rows: TASKS.map((t) => [
          t.name,
          t.fixed ? `${t.defaultN} (fixed)` : `--n (${t.defaultN})`,
          t.corruptions?.join(', ') ?? '—',
          t.description,
        ]),
      })}\n`,
    );
    return;
  }
  const pairs = buildTask(name, o);
  io.stdout.write(toJsonl(pairs));
}
