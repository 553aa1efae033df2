import { ReshardError } from '../core/errors.js';

/** Adoption refused up front: every problem the preflight found, each with its fix; nothing was changed. */
export class AdoptionRefused extends ReshardError {
  constructor(readonly table: string, readonly problems: readonly ReshardError[]) {
    const first = problems[0]!;
    super(first.code,
      problems.length === 1 ? first.message : `${table} cannot be adopted: ${problems.length} problems, the first: ${first.message}`,
      problems.length === 1 ? first.fix : `${first.fix}; \`reshard table adopt-check\` lists them all`);
  }
}
