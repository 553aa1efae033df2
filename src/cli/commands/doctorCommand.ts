import { runDoctor, type DoctorFinding, type DoctorReport } from '../../admin/doctor.js';
import type { ClusterAccess } from '../../plumbing/clusterAccess.js';
import type { Output } from '../output.js';

function statusOf(entry: DoctorFinding): string {
  return entry.fixed ? 'fixed' : entry.severity;
}

/** One line per finding: status, node, check, message and its fix, in aligned columns. */
export function formatFindings(findings: readonly DoctorFinding[]): string[] {
  const width = (values: string[]): number => Math.max(0, ...values.map((value) => value.length));
  const statusWidth = width(findings.map(statusOf));
  const nodeWidth = width(findings.map((entry) => entry.node));
  const checkWidth = width(findings.map((entry) => entry.check));
  return findings.map((entry) =>
    `${statusOf(entry).padEnd(statusWidth)}  ${entry.node.padEnd(nodeWidth)}  ${entry.check.padEnd(checkWidth)}  ${entry.message}${entry.fix ? `. Fix: ${entry.fix}` : ''}`);
}

/** Runs the checks; returns the report (the caller fails the command when errors remain). */
export async function doctorCommand(output: Output, access: ClusterAccess, options: { fix?: boolean }): Promise<DoctorReport> {
  const report = await runDoctor(access, { fix: Boolean(options.fix) });
  output.result({
    findings: report.findings.map((entry) => ({ ...entry, fix: entry.fix ?? null })),
    errors: report.errors,
    warnings: report.warnings,
    fixed: report.fixed,
  });
  for (const line of formatFindings(report.findings)) output.text(line);
  output.text(`doctor: ${report.errors} error(s), ${report.warnings} warning(s)${options.fix ? `, ${report.fixed} fixed` : ''}` +
    (report.errors + report.warnings > 0 && !options.fix ? '; `reshard doctor --fix` removes leftovers (never ownership)' : ''));
  return report;
}
