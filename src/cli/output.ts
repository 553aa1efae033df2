/**
 * Where a command's output goes. Text mode: human lines on stdout. JSON mode:
 * JSON lines on stdout, the last one the command's result. Warnings and
 * progress go to stderr in text mode, so stdout stays clean for pipes.
 */
export class Output {
  constructor(
    readonly json: boolean,
    private readonly stdout: NodeJS.WritableStream = process.stdout,
    private readonly stderr: NodeJS.WritableStream = process.stderr,
  ) {}

  /** Human text, text mode only. */
  text(line = ''): void {
    if (!this.json) this.stdout.write(`${line}\n`);
  }

  /** A JSON line, JSON mode only (progress events). */
  event(value: unknown): void {
    if (this.json) this.stdout.write(`${JSON.stringify(value)}\n`);
  }

  /** The command's result: one JSON object in JSON mode. */
  result(value: unknown): void {
    if (this.json) this.stdout.write(`${JSON.stringify(value)}\n`);
  }

  warn(line: string): void {
    this.stderr.write(`reshard: warning: ${line}\n`);
  }

  error(line: string): void {
    this.stderr.write(`reshard: error: ${line}\n`);
  }

  get interactive(): boolean {
    return !this.json && Boolean((this.stderr as NodeJS.WriteStream).isTTY);
  }

  get errorStream(): NodeJS.WritableStream {
    return this.stderr;
  }
}
