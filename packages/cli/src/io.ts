/** Where the CLI writes and what it knows about its surroundings (injected so tests run it in-process). */
export interface CliIo {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: { write(s: string): unknown; isTTY?: boolean };
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  /** The full command line as typed (for provenance records). */
  readonly argv: readonly string[];
}

export function nodeIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    argv: process.argv,
  };
}

/** Messages for people go to stderr (stdout carries results, or JSON with --json); silent with --quiet. */
export class Log {
  constructor(
    private readonly io: CliIo,
    readonly quiet: boolean,
  ) {}
  info(msg: string): void {
    if (!this.quiet) this.io.stderr.write(`${msg}\n`);
  }
  warn(msg: string): void {
    this.io.stderr.write(`warning: ${msg}\n`);
  }
}
